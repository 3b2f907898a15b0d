"""``famous verify DIR``: famous against transformers (the reference) on the same weights
(a Hub folder, or a GGUF file that both load through their GGUF readers)."""

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
    max_abs_logit_diff: float
    greedy_match: bool
    first_mismatch: int | None
    famous_tokens: list[int]
    reference_tokens: list[int]
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.greedy_match and self.max_abs_logit_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


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
    if problems:
        raise GenAIError(
            f"{path.name}: transformers' GGUF loader builds this model differently "
            f"({'; '.join(problems)}), so it cannot check famous on it; verify the Hub folder "
            "the GGUF was made from instead"
        )


def verify(
    model_dir: str | Path,
    dtype: str = "fp32",
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    seed: int = 0,
    tolerance: float | None = None,
) -> VerifyReport:
    """Random prompt → prefill logits (max |diff|) and greedy tokens of both engines."""
    import torch

    from famous.genai.kernels.decode import decode
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
        cache = ours.init_cache(1)
        logits, cache = ours(
            ids, torch.arange(prompt_tokens), cache, end=prompt_tokens, inplace=True
        )
        diff = (ref_logits - logits.float()).abs().max().item()
        mine = []
        nxt = logits[:, -1:]
        for i in range(new_tokens):
            tok = int(nxt[0, -1].argmax())
            mine.append(tok)
            p = prompt_tokens + i
            nxt, cache = decode(ours, torch.tensor([[tok]]), torch.tensor([p]), cache)
        out = ref.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        theirs = out[0, prompt_tokens:].tolist()
    mismatch = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
    return VerifyReport(
        model_type=ours.cfg.model_type,
        dtype=str(dt).removeprefix("torch."),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        max_abs_logit_diff=diff,
        greedy_match=mine == theirs,
        first_mismatch=mismatch,
        famous_tokens=mine,
        reference_tokens=theirs,
        tolerance=tolerance,
    )
