"""Multi-signature export: ``prefill_{N}`` for a list of prompt lengths and ``decode``,
sharing one set of weights, with the KV cache as explicit inputs and outputs.

Every signature has static shapes (what LiteRT / ExecuTorch want) and the same flat calling
convention::

    prefill_N(tokens[1, N] i64, input_pos[N] i64, last[1] i64, k_0, v_0, …, k_L-1, v_L-1)
        → (logits[1, 1, vocab], k_0', v_0', …)
    decode(tokens[1, 1] i64, input_pos[1] i64, k_0, v_0, …)
        → (logits[1, 1, vocab], k_0', v_0', …)

Each ``k_i`` / ``v_i`` is ``[1, num_key_value_heads, max_seq_len, head_dim]`` (a ring of
``window`` slots for a sliding-window layer). A prompt shorter than ``N`` is right-padded:
the padding is written to slots after the prompt, hidden by the causal mask and overwritten
by the next real tokens; ``last`` picks the row whose logits come back (the final norm and
the LM head only see that row).

``SignatureModel`` wraps any backend that can run these signatures (``torch.export``
programs here; ExecuTorch and LiteRT in their modules) behind the call protocol of
famous's eager model, so ``famous.genai.pipeline.Pipeline`` — tokenizer, samplers, stop
strings, streaming — runs an exported engine unchanged. Prefill picks the smallest
signature that fits; a prompt longer than the largest one is chunked (or refused with
``chunk=False``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from famous.genai.errors import GenAIError
from famous.genai.layers.kv_cache import cache_kinds

DEFAULT_PREFILL_LENGTHS = (8, 64, 128, 256, 512, 1024)
DECODE = "decode"
META_FILE = "signatures.json"


class PromptTooLong(GenAIError, ValueError):
    """A prompt longer than the largest prefill signature while chunking is off, or longer
    than the cache."""


def prefill_name(n: int) -> str:
    return f"prefill_{n}"


# ------------------------------------------------------------------------------ metadata


@dataclass
class SignatureMeta:
    """What a runtime needs to drive the signatures (saved next to every artifact)."""

    model_type: str
    vocab_size: int
    max_seq_len: int
    prefill_lengths: list[int]
    kv_shapes: list[list[int]]  # per layer: [1, kv_heads, slots, head_dim] (k and v alike)
    kv_dtype: str
    rings: list[int | None]
    eos_token_id: list[int] = field(default_factory=list)
    composite_ops: bool = False

    @property
    def signatures(self) -> list[str]:
        return [prefill_name(n) for n in self.prefill_lengths] + [DECODE]

    @property
    def allow_padding(self) -> bool:
        # a ring slot can be reused by a padding position: no padding with rings
        return all(r is None for r in self.rings)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.kv_dtype)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SignatureMeta:
        return cls(**json.loads(text))

    @classmethod
    def of(cls, model: nn.Module, prefill_lengths: Sequence[int], composite: bool) -> SignatureMeta:
        cache = model.init_cache(1)
        return cls(
            model_type=model.cfg.model_type,
            vocab_size=model.cfg.vocab_size,
            max_seq_len=model.max_seq_len,
            prefill_lengths=sorted(set(int(n) for n in prefill_lengths)),
            kv_shapes=[list(k.shape) for k, _ in cache],
            kv_dtype=str(cache[0][0].dtype).removeprefix("torch."),
            rings=list(cache_kinds(model.cfg, model.max_seq_len)),
            eos_token_id=list(model.cfg.eos_token_id),
            composite_ops=composite,
        )

    def empty_cache(self) -> list[torch.Tensor]:
        dtype = self.torch_dtype
        return [torch.zeros(s, dtype=dtype) for s in self.kv_shapes for _ in (0, 1)]

    def input_names(self, name: str) -> list[str]:
        kv = [f"{kv}_{i}" for i in range(len(self.kv_shapes)) for kv in ("k", "v")]
        head = ["tokens", "input_pos"] + ([] if name == DECODE else ["last"])
        return head + kv

    def output_names(self) -> list[str]:
        kv = [f"{kv}_out_{i}" for i in range(len(self.kv_shapes)) for kv in ("k", "v")]
        return ["logits", *kv]


def check_prefill_lengths(lengths: Sequence[int], max_seq_len: int) -> list[int]:
    out = sorted(set(int(n) for n in lengths))
    if not out:
        raise ValueError("at least one prefill length is needed")
    bad = [n for n in out if n < 2 or n > max_seq_len]
    if bad:
        raise ValueError(
            f"prefill lengths {bad} do not fit: each must be in [2, max_seq_len={max_seq_len}]"
        )
    return out


# ------------------------------------------------------------------------------ modules


def _unflatten(kv: Sequence[torch.Tensor]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    return tuple((kv[2 * i], kv[2 * i + 1]) for i in range(len(kv) // 2))


def _flatten(cache) -> list[torch.Tensor]:
    return [t for pair in cache for t in pair]


class PrefillSignature(nn.Module):
    """``prefill_N``: the model over N (right-padded) tokens, logits of row ``last`` only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, input_pos, last, *kv):
        def pick(_module, args):
            return (args[0].index_select(1, last),)

        handle = self.model.norm.register_forward_pre_hook(pick)
        try:
            logits, cache = self.model(tokens, input_pos, _unflatten(kv))
        finally:
            handle.remove()
        return (logits, *_flatten(cache))


class DecodeSignature(nn.Module):
    """``decode``: one token at ``input_pos``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, input_pos, *kv):
        logits, cache = self.model(tokens, input_pos, _unflatten(kv))
        return (logits, *_flatten(cache))


def signature_module(model: nn.Module, name: str) -> nn.Module:
    return DecodeSignature(model) if name == DECODE else PrefillSignature(model)


def example_inputs(meta: SignatureMeta, name: str) -> tuple[torch.Tensor, ...]:
    """Sample inputs of signature ``name`` (zeros cache, positions from 0)."""
    kv = meta.empty_cache()
    if name == DECODE:
        return (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long), *kv)
    n = int(name.removeprefix("prefill_"))
    return (
        torch.zeros(1, n, dtype=torch.long),
        torch.arange(n, dtype=torch.long),
        torch.tensor([n - 1], dtype=torch.long),
        *kv,
    )


# ------------------------------------------------------------------------------ export


@dataclass
class MultiSignatureProgram:
    """One ``torch.export`` program per signature; the programs share the weight tensors."""

    programs: dict[str, torch.export.ExportedProgram]
    meta: SignatureMeta

    def save(self, path: str | Path) -> Path:
        """One ``.pt2`` archive holding every signature (``torch.export.pt2_archive``)."""
        from torch.export.pt2_archive._package import package_pt2

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        package_pt2(
            str(path), exported_programs=self.programs, extra_files={META_FILE: self.meta.to_json()}
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> MultiSignatureProgram:
        from torch.export.pt2_archive._package import load_pt2

        contents = load_pt2(str(path))
        raw = contents.extra_files[META_FILE]
        meta = SignatureMeta.from_json(raw.decode() if isinstance(raw, bytes) else raw)
        return cls(dict(contents.exported_programs), meta)


def export_signatures(
    model: nn.Module,
    prefill_lengths: Sequence[int] = (8, 64),
    *,
    composite: bool = False,
    decode: bool = True,
) -> MultiSignatureProgram:
    """``torch.export`` each ``prefill_N`` and ``decode`` of famous's ``model``.

    ``composite``: route the model through ``famous.genai.ops`` first, so SDPA, RMSNorm and
    the cache update stay single nodes. The model's ``max_seq_len`` is the cache capacity.
    """
    from famous.genai.ops import has_composite_ops, with_composite_ops

    lengths = check_prefill_lengths(prefill_lengths, model.max_seq_len)
    if composite and not has_composite_ops(model):
        with_composite_ops(model)
    model.eval()
    meta = SignatureMeta.of(model, lengths, composite or has_composite_ops(model))
    names = [prefill_name(n) for n in lengths] + ([DECODE] if decode else [])
    programs = {}
    with torch.no_grad():
        for name in names:
            programs[name] = torch.export.export(
                signature_module(model, name), example_inputs(meta, name), strict=False
            )
    return MultiSignatureProgram(programs, meta)


# ------------------------------------------------------------------------------ running


class SignatureBackend(Protocol):
    """Anything that runs the signatures: inputs and outputs in the flat order above."""

    meta: SignatureMeta

    def run(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]: ...


class TorchExportBackend:
    """Runs ``torch.export`` programs (``ExportedProgram.module()``)."""

    def __init__(self, program: MultiSignatureProgram) -> None:
        self.meta = program.meta
        self._modules = {n: ep.module() for n, ep in program.programs.items()}

    def run(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self._modules[name](*inputs))


@dataclass(frozen=True)
class Step:
    """One call of a signature during prefill: ``length`` slots, ``real`` of them prompt."""

    signature: str
    start: int
    length: int
    real: int


def plan_prefill(n: int, meta: SignatureMeta, start: int = 0, chunk: bool = True) -> list[Step]:
    """Which signatures cover a prompt of ``n`` tokens starting at cache slot ``start``.

    The smallest prefill that holds the rest of the prompt; a longer prompt is cut into
    chunks of the largest prefill (``chunk=False``: refused). Where padding is impossible
    (ring caches, or padding would run past the cache) exact-size prefills and single
    decode steps cover the tail.
    """
    lengths = meta.prefill_lengths
    largest = lengths[-1]
    if start + n > meta.max_seq_len:
        raise PromptTooLong(
            f"prompt of {n} tokens does not fit the {meta.max_seq_len}-slot KV cache "
            f"(from position {start})"
        )
    if n > largest and not chunk:
        raise PromptTooLong(
            f"prompt has {n} tokens but the largest prefill signature holds {largest} "
            f"(signatures: {', '.join(meta.signatures)}); enable chunking or export a "
            f"prefill_{n} signature"
        )
    steps: list[Step] = []
    pos, left = start, n
    while left > 0:
        fits = [
            s
            for s in lengths
            if s >= left and pos + s <= meta.max_seq_len and (s == left or meta.allow_padding)
        ]
        if left > largest:
            steps.append(Step(prefill_name(largest), pos, largest, largest))
            take = largest
        elif fits:
            steps.append(Step(prefill_name(fits[0]), pos, fits[0], left))
            take = left
        else:
            exact = [s for s in lengths if s <= left]
            if exact:
                take = exact[-1]
                steps.append(Step(prefill_name(take), pos, take, take))
            else:
                take = 1
                steps.append(Step(DECODE, pos, 1, 1))
        pos += take
        left -= take
    return steps


class SignatureModel:
    """An exported engine behind the eager model's call protocol (what ``Pipeline`` uses).

    One prompt at a time (batch 1); the cache is a flat list of tensors handed to the
    backend and back.
    """

    def __init__(self, backend: SignatureBackend, cfg: Any = None, chunk: bool = True) -> None:
        self.backend = backend
        self.meta = backend.meta
        self.max_seq_len = self.meta.max_seq_len
        self.chunk = chunk
        self.cfg = cfg if cfg is not None else _MiniConfig(self.meta)
        self.calls: list[str] = []  # the signatures run, in order (for tests and profiling)

    def init_cache(self, batch_size: int = 1, dtype: torch.dtype | None = None):
        if batch_size != 1:
            raise ValueError("exported engines run one prompt at a time (batch size 1)")
        return self.meta.empty_cache()

    def __call__(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_cache: list[torch.Tensor],
        *,
        pad_lens: torch.Tensor | None = None,
        end: int | None = None,
        inplace: bool = False,
        last_logits_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the logits of the last token ([1, 1, vocab]) and the new cache."""
        if pad_lens is not None or tokens.shape[0] != 1:
            raise ValueError("exported engines run one prompt at a time (no batches)")
        kv = list(kv_cache)
        n = tokens.shape[1]
        start = int(input_pos[0])
        if n == 1:
            return self._run(DECODE, [tokens.long(), input_pos.long()], kv)
        logits = None
        for step in plan_prefill(n, self.meta, start, self.chunk):
            off = step.start - start
            chunk = tokens[:, off : off + step.real].long()
            if step.signature == DECODE:
                logits, kv = self._run(DECODE, [chunk, torch.tensor([step.start])], kv)
                continue
            if step.real < step.length:
                pad = torch.zeros(1, step.length - step.real, dtype=torch.long)
                chunk = torch.cat((chunk, pad), dim=1)
            pos = torch.arange(step.start, step.start + step.length)
            last = torch.tensor([step.real - 1])
            logits, kv = self._run(step.signature, [chunk, pos, last], kv)
        return logits, kv

    def _run(self, name: str, head: list[torch.Tensor], kv: list[torch.Tensor]):
        self.calls.append(name)
        out = self.backend.run(name, head + kv)
        return out[0], list(out[1:])


@dataclass
class _MiniConfig:
    """The little of ``ModelConfig`` the pipeline reads when only the metadata is known."""

    meta: SignatureMeta

    @property
    def eos_token_id(self) -> tuple[int, ...]:
        return tuple(self.meta.eos_token_id)

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size


__all__ = [
    "DECODE",
    "DEFAULT_PREFILL_LENGTHS",
    "DecodeSignature",
    "MultiSignatureProgram",
    "PrefillSignature",
    "PromptTooLong",
    "SignatureBackend",
    "SignatureMeta",
    "SignatureModel",
    "Step",
    "TorchExportBackend",
    "example_inputs",
    "export_signatures",
    "plan_prefill",
    "prefill_name",
]
