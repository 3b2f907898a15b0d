"""Parity of an edge program (``.pte`` / ``.tflite``) with famous's fp32 eager model.

Both run the same teacher-forced token stream through ``Stepper``: the first tokens of each
fixed prompt (``quality.fixed_prompts``) as one prefill, then every following prompt token
as a decode step, so every position after the prefill is scored and the decode signature (the
one that runs per generated token) is the one measured. KL and top-1 are
``quality.kl_top1``'s (mean KL(fp32 ‖ program) over positions); decode tok/s is the program's
decode steps timed by wall clock, the first two left out as warm-up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROMPT_TOKENS = 32  # per fixed prompt, prefill included
PROMPTS = 2
PREFILL_TOKENS = 8
WARMUP_STEPS = 2


@dataclass(frozen=True)
class EdgeParity:
    """How an edge program's logits compare with the fp32 eager model's on the fixed prompts."""

    kl: float  # mean KL(fp32 eager ‖ program) per scored position
    top1: float  # share of scored positions with the same argmax
    positions: int
    decode_tok_s: float  # the program's decode steps per second (teacher-forced)
    reference: str = "famous fp32 eager"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _teacher_forced(model: Any, prompt: list[int], prefill: int) -> tuple[list[Any], float, int]:
    """Logits [vocab] at every position from ``prefill - 1`` on; the seconds and count of
    the decode steps after the warm-up."""
    import torch

    from famous.genai.generation import Stepper

    stepper = Stepper(model)
    rows, seconds, timed = [], 0.0, 0
    with torch.inference_mode():
        rows.append(stepper.start(prompt[:prefill])[0, -1].float())
        for i, token in enumerate(prompt[prefill:]):
            started = time.perf_counter()
            logits = stepper.step(token)
            if i >= WARMUP_STEPS:
                seconds += time.perf_counter() - started
                timed += 1
            rows.append(logits[0, -1].float())
    return rows, seconds, timed


def model_parity(model: Any, model_dir: str | Path, max_seq_len: int) -> EdgeParity:
    """Score ``model`` (famous's eager model, or a ``SignatureModel`` over a program) against
    the fp32 eager model of ``model_dir`` on the fixed prompts."""
    import torch

    from famous.genai.quality import fixed_prompts, kl_top1, load_reference

    length = min(PROMPT_TOKENS, max_seq_len)
    prefill = min(PREFILL_TOKENS, length // 2)
    eager = load_reference(model_dir, max_seq_len)
    ref, got, seconds, steps = [], [], 0.0, 0
    for prompt in fixed_prompts(model_dir, length=length, count=PROMPTS):
        want, _, _ = _teacher_forced(eager, prompt, prefill)
        have, s, n = _teacher_forced(model, prompt, prefill)
        ref.append(torch.stack(want))
        got.append(torch.stack(have))
        seconds, steps = seconds + s, steps + n
    kl, top1 = kl_top1(ref, got)
    return EdgeParity(kl, top1, sum(r.shape[0] for r in ref), steps / max(seconds, 1e-9))


def edge_parity(artifact: str | Path, model_dir: str | Path) -> EdgeParity:
    """Score ``artifact``, run by its own runtime, against the fp32 eager model."""
    from famous.genai.export.programs import open_backend
    from famous.genai.export.signatures import SignatureModel
    from famous.genai.models import load_config

    backend = open_backend(artifact)
    program = SignatureModel(backend, load_config(model_dir))
    return model_parity(program, model_dir, backend.meta.max_seq_len)
