"""Profiling: prefill and decode tokens/s, time per layer and per op kind, peak RSS — for
famous's eager model and for each exported artifact it can run (``.pt2``, ``.pte``,
``.tflite``). ``famous profile`` renders what this returns.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Timing:
    name: str
    ms: float
    calls: int = 0
    share: float = 0.0  # of the measured total


@dataclass
class ProfileResult:
    target: str  # eager | torch-export | executorch | litert
    artifact: str
    prompt_tokens: int
    new_tokens: int
    prefill_s: float
    decode_s: float
    peak_rss_mb: float
    layers: list[Timing] = field(default_factory=list)
    op_kinds: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.new_tokens / self.decode_s if self.decode_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prefill_tok_s"] = round(self.prefill_tok_s, 2)
        d["decode_tok_s"] = round(self.decode_tok_s, 2)
        return d


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _prompt(n: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, max(4, vocab), (1, n), generator=g)


class _LayerClock:
    """Wall time per top-level module (embedding, each block, final norm, LM head)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._handles = []
        self._start: dict[str, float] = {}
        named = [("embed", getattr(model, "embed", None))]
        named += [(f"layers.{i}", b) for i, b in enumerate(getattr(model, "layers", []))]
        named += [("norm", getattr(model, "norm", None))]
        for name, mod in named:
            if mod is None:
                continue
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))

    def _pre(self, name: str):
        def hook(_m, _a):
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str):
        def hook(_m, _a, _o):
            self.totals[name] += time.perf_counter() - self._start.pop(name)
            self.calls[name] += 1

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def timings(self, total_s: float) -> list[Timing]:
        out = [
            Timing(n, s * 1e3, self.calls[n], s / total_s if total_s else 0.0)
            for n, s in self.totals.items()
        ]
        accounted = sum(self.totals.values())
        if total_s > accounted:
            rest = total_s - accounted
            # decoding steps run by famous's CPU kernels call no block module: they land here
            out.append(Timing("lm_head, kernel decode, other", rest * 1e3, 0, rest / total_s))
        return out


def _generate(model: Any, prompt: torch.Tensor, new_tokens: int, eager: bool):
    """Greedy prefill + decode; returns (prefill_s, decode_s)."""
    n = prompt.shape[1]
    kw = {"end": n, "inplace": True, "last_logits_only": True} if eager else {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        logits, cache = model(prompt, torch.arange(n), model.init_cache(1), **kw)
        t1 = time.perf_counter()
        pos = n
        for _ in range(new_tokens):
            tok = logits[:, -1].argmax(-1, keepdim=True)
            kw = {"end": pos + 1, "inplace": True} if eager else {}
            logits, cache = model(tok, torch.tensor([pos]), cache, **kw)
            pos += 1
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def profile_model(
    model: Any,
    *,
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    op_profile: bool = True,
    top_ops: int = 15,
    label: str = "eager",
) -> ProfileResult:
    """Profile famous's eager ``DecoderModel`` (one warm-up run first)."""
    vocab = model.cfg.vocab_size
    prompt = _prompt(prompt_tokens, vocab)
    if prompt_tokens + new_tokens >= model.max_seq_len:
        raise ValueError(
            f"{prompt_tokens} + {new_tokens} tokens do not fit max_seq_len={model.max_seq_len}"
        )
    _generate(model, prompt[:, : min(8, prompt_tokens)], 2, eager=True)  # warm-up
    prefill_s, decode_s = _generate(model, prompt, new_tokens, eager=True)
    clock = _LayerClock(model)
    try:
        t = time.perf_counter()
        _generate(model, prompt, new_tokens, eager=True)
        total = time.perf_counter() - t
    finally:
        clock.remove()
    result = ProfileResult(
        label,
        "",
        prompt_tokens,
        new_tokens,
        prefill_s,
        decode_s,
        0.0,
        layers=clock.timings(total),
    )
    if op_profile:
        result.op_kinds = _op_kinds(model, prompt, new_tokens, top_ops)
    result.peak_rss_mb = peak_rss_mb()
    return result


def _op_kinds(model: Any, prompt: torch.Tensor, new_tokens: int, top: int) -> list[Timing]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _generate(model, prompt, max(1, min(new_tokens, 8)), eager=True)
    rows = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in rows) or 1.0
    rows.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        Timing(e.key, e.self_cpu_time_total / 1e3, e.count, e.self_cpu_time_total / total)
        for e in rows[:top]
    ]


_TARGETS = {".pt2": "torch-export", ".pte": "executorch", ".tflite": "litert"}


def profile_artifact(
    path: str | Path, *, prompt_tokens: int = 64, new_tokens: int = 32
) -> ProfileResult:
    """Profile an exported artifact through ``SignatureModel`` (time per signature call;
    the runtimes fuse layers, so there is no per-layer split)."""
    from famous.genai.export.programs import open_backend
    from famous.genai.export.signatures import SignatureModel

    path = Path(path)
    backend = open_backend(path)
    timed = _TimedBackend(backend)
    model = SignatureModel(timed)
    prompt = _prompt(prompt_tokens, backend.meta.vocab_size)
    if prompt_tokens + new_tokens >= model.max_seq_len:
        raise ValueError(
            f"{prompt_tokens} + {new_tokens} tokens do not fit the artifact's "
            f"{model.max_seq_len}-slot cache; use fewer --prompt-tokens / --new-tokens"
        )
    _generate(model, prompt[:, : min(4, prompt_tokens)], 1, eager=False)  # warm-up
    timed.reset()
    prefill_s, decode_s = _generate(model, prompt, new_tokens, eager=False)
    total = prefill_s + decode_s
    calls = [
        Timing(name, s * 1e3, timed.calls[name], s / total if total else 0.0)
        for name, s in timed.totals.items()
    ]
    return ProfileResult(
        _TARGETS.get(path.suffix.lower(), path.suffix),
        str(path),
        prompt_tokens,
        new_tokens,
        prefill_s,
        decode_s,
        peak_rss_mb(),
        layers=calls,
        notes=[f"signatures run: {', '.join(sorted(timed.calls))}"],
    )


class _TimedBackend:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.meta = backend.meta
        self.reset()

    def reset(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def run(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        t = time.perf_counter()
        out = self.backend.run(name, inputs)
        self.totals[name] += time.perf_counter() - t
        self.calls[name] += 1
        return out


def package_artifacts(directory: str | Path) -> list[Path]:
    """The artifacts of a built package (or any folder) that ``profile_artifact`` runs."""
    d = Path(directory)
    found: list[Path] = []
    for sub in (d, d / "artifacts"):
        if sub.is_dir():
            found += [p for p in sorted(sub.iterdir()) if p.suffix.lower() in _TARGETS]
    return found


def format_profile(r: ProfileResult) -> str:
    lines = [
        f"{r.target}{' ' + r.artifact if r.artifact else ''}",
        f"  prefill {r.prompt_tokens} tokens: {r.prefill_tok_s:9.1f} tok/s "
        f"({r.prefill_s * 1e3:.1f} ms)",
        f"  decode  {r.new_tokens} tokens: {r.decode_tok_s:9.1f} tok/s ({r.decode_s * 1e3:.1f} ms)",
        f"  peak RSS {r.peak_rss_mb:.0f} MiB",
    ]
    if r.layers:
        lines.append("  time per layer" if r.target == "eager" else "  time per signature")
        for t in r.layers:
            lines.append(f"    {t.name:<24} {t.ms:9.2f} ms  {t.share * 100:5.1f} %  ×{t.calls}")
    if r.op_kinds:
        lines.append("  time per op kind (self CPU, torch.profiler)")
        for t in r.op_kinds:
            lines.append(f"    {t.name:<32} {t.ms:9.2f} ms  {t.share * 100:5.1f} %  ×{t.calls}")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
