"""RoPE scaling that depends on the current length (Phi-3 LongRoPE, dynamic NTK) against
transformers, which recomputes it from ``max(position_ids) + 1`` on every call: prefill
logits and every decode step's logits, with a cache larger than the original length."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from genai_helpers import hf_greedy, save_hf_model

from famous.genai.generation import Stepper
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config

CACHE = 128  # famous's cache capacity: larger than every original length below
TOL = 1e-4


def _phi3_longrope(orig: int, max_pos: int, prompt: int, **extra: float) -> tuple[dict, int]:
    cfg = fake_hf_config("phi3")
    rotary_pairs = 16 * 0.5 // 2  # head_dim 16, partial_rotary_factor 0.5
    g = torch.Generator().manual_seed(3)
    scaling = {
        "rope_type": "longrope",
        "short_factor": (1 + torch.rand(int(rotary_pairs), generator=g)).tolist(),
        "long_factor": (2 + 4 * torch.rand(int(rotary_pairs), generator=g)).tolist(),
        **extra,
    }
    cfg.update(
        max_position_embeddings=max_pos,
        original_max_position_embeddings=orig,
        rope_scaling=scaling,
        sliding_window=None,
    )
    return cfg, prompt


def _llama_dynamic() -> tuple[dict, int]:
    cfg = fake_hf_config("llama")
    cfg.update(max_position_embeddings=32, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    return cfg, 24


CASES = {
    # a prompt within the original 32 positions, a decode that crosses them
    "longrope-short-prompt": _phi3_longrope(32, 96, 16),
    # an explicit factor decides the attention factor (not max / original positions)
    "longrope-explicit-factor": _phi3_longrope(32, 64, 40, factor=4.0),
    # dynamic NTK: frequencies follow the length once it passes max_position_embeddings
    "dynamic-ntk": _llama_dynamic(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_length_dependent_rope_matches_transformers(case: str, tmp_path: Path) -> None:
    cfg, prompt = CASES[case]
    hf_model = save_hf_model(cfg, tmp_path)
    ours = load_model(tmp_path, max_seq_len=CACHE)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, cfg["vocab_size"], (1, prompt), generator=g)
    with torch.no_grad():
        ref = hf_model(ids).logits
        got, _ = ours(ids, torch.arange(prompt), ours.init_cache(1))
    prefill_delta = (ref - got).abs().max().item()
    assert prefill_delta < TOL, f"prefill logits differ by {prefill_delta:.3g}"
    new = 24
    ref_tokens, ref_steps = hf_greedy(hf_model, ids, new)
    stepper = Stepper(ours)
    with torch.inference_mode():
        logits = stepper.start(ids[0].tolist())
        for i, tok in enumerate(ref_tokens):  # teacher-forced over transformers' tokens
            delta = (logits[0, -1].float() - ref_steps[i]).abs().max().item()
            where = f"decode step {i} (position {prompt + i})"
            assert delta < TOL, f"{where}: logits differ by {delta:.3g}"
            logits = stepper.step(tok)
