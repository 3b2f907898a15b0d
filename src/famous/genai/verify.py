"""``famous verify DIR``: famous against transformers (the reference) on the same weights
(a Hub folder, or a GGUF file that both load through their GGUF readers).

Both sides decode greedily through end-of-sequence tokens (neither stops at one nor
suppresses it), and famous is fed the reference's tokens, so every decode step's logits
are compared on the same prefix: a per-step max |Δ|, and whether famous's own greedy
pick agrees at each step."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class VerifyReport:
    model_type: str
    dtype: str
    prompt_tokens: int
    new_tokens: int
    max_abs_logit_diff: float  # over the prompt's logits (prefill)
    step_logit_diffs: list[float]  # max |Δ| of each decode step's logits
    greedy_match: bool
    first_mismatch: int | None
    famous_tokens: list[int]  # famous's greedy pick at each step, on the reference's prefix
    reference_tokens: list[int]
    tolerance: float

    @property
    def max_step_logit_diff(self) -> float:
        return max(self.step_logit_diffs, default=0.0)

    @property
    def ok(self) -> bool:
        worst = max(self.max_abs_logit_diff, self.max_step_logit_diff)
        return self.greedy_match and worst <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_step_logit_diff": self.max_step_logit_diff, "ok": self.ok}


def _reference(model_dir: str | Path, dtype: Any, cfg: Any) -> Any:
    """transformers on the same weights; a GGUF through its own ``gguf_file=`` loader, which
    dequantizes to float32 (after checking it reads the file as famous does)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from famous.genai.gguf_source.reader import is_gguf

    path = Path(model_dir)
    if not is_gguf(path):
        return AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, trust_remote_code=False
        ).eval()
    _check_gguf_reference(AutoConfig.from_pretrained(path.parent, gguf_file=path.name), cfg, path)
    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=dtype
    ).eval()


def _check_gguf_reference(tc: Any, cfg: Any, path: Path) -> None:
    """transformers' GGUF loader ignores some GGUF fields (``attention.key_length`` for some
    architectures, ``rope_freqs``): a model it built differently is no reference, so say so
    rather than report famous as wrong."""
    from famous.genai.errors import GenAIError

    a = cfg.blocks[0].attention
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    rope = getattr(tc, "rope_parameters", None) or getattr(tc, "rope_scaling", None) or {}
    problems = []
    if head_dim != a.head_dim:
        problems.append(f"head_dim {head_dim} where the GGUF says {a.head_dim}")
    if rope.get("rope_type", "default") != a.rope.rope_type:
        problems.append(
            f"RoPE {rope.get('rope_type', 'default')!r} where the GGUF holds {a.rope.rope_type!r}"
        )
    if not problems:
        problems = _attention_differences(tc, cfg)
    if problems:
        raise GenAIError(
            f"{path.name}: transformers' GGUF loader builds this model differently "
            f"({'; '.join(problems)}), so it cannot check famous on it; verify the Hub folder "
            "the GGUF was made from instead"
        )


def _attention_differences(tc: Any, cfg: Any) -> list[str]:
    """Per layer, what transformers' config makes of the attention (its query scale,
    window, RoPE, caps) against famous's reading of the GGUF: transformers' loader keeps
    Gemma's default query_pre_attn_scalar and sliding-window pattern, for one."""
    from famous.genai.models import family_for

    theirs = family_for(tc.to_dict()).config_from_hf(tc.to_dict())
    out = []
    for i, (t, o) in enumerate(zip(theirs.blocks, cfg.blocks, strict=False)):
        for what in ("softmax_scale", "sliding_window", "rope", "logit_softcapping"):
            mine, ref = getattr(o.attention, what), getattr(t.attention, what)
            if mine != ref:
                shown = (ref, mine) if what != "rope" else (ref.rope_type, mine.rope_type)
                out.append(f"layer {i}'s {what} {shown[0]!r} where the GGUF holds {shown[1]!r}")
                break
    if theirs.final_logit_softcapping != cfg.final_logit_softcapping:
        out.append("final_logit_softcapping differs")
    return out[:3]


def verify(
    model_dir: str | Path,
    dtype: str = "fp32",
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    seed: int = 0,
    tolerance: float | None = None,
) -> VerifyReport:
    """Random prompt → prefill logits, then ``new_tokens`` greedy steps of both engines."""
    import torch

    from famous.genai.generation import Stepper
    from famous.genai.loader import load_model, resolve_dtype

    dt = resolve_dtype(dtype)
    tolerance = tolerance if tolerance is not None else (1e-4 if dt == torch.float32 else 0.25)
    ours = load_model(model_dir, dt, max_seq_len=prompt_tokens + new_tokens + 8)
    ref = _reference(model_dir, dt, ours.cfg)
    g = torch.Generator().manual_seed(seed)
    vocab = ours.cfg.vocab_size
    ids = torch.randint(min(3, vocab - 1), vocab, (1, prompt_tokens), generator=g)
    with torch.inference_mode():
        ref_logits = ref(ids).logits.float()
        logits, _ = ours(ids, torch.arange(prompt_tokens), ours.init_cache(1))
        diff = (ref_logits - logits.float()).abs().max().item()
        out = ref.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=0,
            eos_token_id=None,  # greedy through EOS, as famous's side below
        )
        theirs = out.sequences[0, prompt_tokens:].tolist()
        stepper = Stepper(ours)
        step = stepper.start(ids[0].tolist())
        mine, steps = [], []
        for i, tok in enumerate(theirs):
            step_logits = step[0, -1].float()
            steps.append((step_logits - out.logits[i][0].float()).abs().max().item())
            mine.append(int(step_logits.argmax()))
            step = stepper.step(tok)
    mismatch = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b), None)
    return VerifyReport(
        model_type=ours.cfg.model_type,
        dtype=str(dt).removeprefix("torch."),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        max_abs_logit_diff=diff,
        step_logit_diffs=steps,
        greedy_match=mine == theirs and len(theirs) == new_tokens,
        first_mismatch=mismatch,
        famous_tokens=mine,
        reference_tokens=theirs,
        tolerance=tolerance,
    )
