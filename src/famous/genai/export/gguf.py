"""Hugging Face model directory → GGUF that llama.cpp loads, written with the ``gguf`` package.

Streaming: the tensor directory (names, shapes, types, byte sizes) is known from the
safetensors headers alone, so the GGUF header, metadata and tensor infos are written
first; then each tensor is read from its shard with plain file reads (row chunks for the
big ones), transformed, quantized and appended. Only one tensor is ever in memory, so a
model larger than free RAM converts (peak RSS ≈ the largest tensor, not the model).

Types: ``f32``, ``f16``, ``bf16``, ``q8_0``, ``q4_0`` written by famous (with ``gguf.quants``),
and the K-quants ``q4_k_m``, ``q5_k_m``, ``q6_k`` made by llama.cpp's own quantizer
(``llama_model_quantize``) from famous's F16 output. Per-tensor types can come from a
quantization recipe (``tensor_type``); a tensor a block quantizer cannot hold (a row width
not divisible by the block) falls back to F16, and 1-D tensors (norms, biases) stay F32 —
as llama.cpp's own converter does.

Rotary layout: llama.cpp runs the ``llama`` architecture with interleaved-pair RoPE (Meta's
original layout), but Hugging Face Llama checkpoints store each q/k head as [first halves ;
second halves] (``rotate_half``). So the rows of q_proj and k_proj are re-ordered per head,
half-split → interleaved: row ``h·d + 2j + s`` of the output takes row ``h·d + s·d/2 + j`` of
the input. Qwen2/3, Gemma and Phi-3 run NEOX-style RoPE in llama.cpp: no permutation.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from famous.genai.config import ModelConfig, longrope_attention_factor
from famous.genai.errors import GenAIError, UnsupportedModelError
from famous.genai.export.gguf_families import (
    FUSED_TRANSFORMS,
    FamilyExportError,
    apply_fused,
    check_exportable,
    expert_groups,
    fused_expert_tensors,
    gpt_oss_metadata,
    query_scale_fold,
    write_family_metadata,
)
from famous.genai.export.gguf_inspect import tensor_types
from famous.genai.export.gguf_vocab import read_vocab, write_vocab
from famous.genai.export.safetensors_stream import (
    SourceTensor,
    read_all,
    read_rows,
    row_chunks,
    scan,
)
from famous.genai.hf_config import read_config_json
from famous.genai.models import load_config
from famous.genai.quantize.recipe import get_recipe

WRITTEN_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
LLAMA_CPP_TYPES = ("q4_k_m", "q5_k_m", "q6_k")
GGUF_TYPES = WRITTEN_TYPES + LLAMA_CPP_TYPES


class GGUFExportError(GenAIError, ValueError):
    """A model or option the GGUF exporter cannot handle; the message says why and what to do."""


@dataclass(frozen=True)
class TensorRole:
    """What a weight is, for a recipe to pick its type."""

    component: str  # embedding | attention | feed_forward | lm_head | norm | other
    block: int | None  # transformer block index, None outside the blocks
    gguf_name: str


@dataclass(frozen=True)
class _Arch:
    gguf_arch: Any  # gguf.MODEL_ARCH
    permute_qk: bool = False
    norm_plus_one: bool = False  # Gemma stores w for a scale of (1 + w)


def _arch_for(model_type: str) -> _Arch:
    import gguf

    table = {
        "llama": _Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
        "mistral": _Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
        "qwen2": _Arch(gguf.MODEL_ARCH.QWEN2),
        "qwen3": _Arch(gguf.MODEL_ARCH.QWEN3),
        "gemma": _Arch(gguf.MODEL_ARCH.GEMMA, norm_plus_one=True),
        "gemma2": _Arch(gguf.MODEL_ARCH.GEMMA2, norm_plus_one=True),
        "gemma3_text": _Arch(gguf.MODEL_ARCH.GEMMA3, norm_plus_one=True),
        "phi3": _Arch(gguf.MODEL_ARCH.PHI3),
        "qwen3_moe": _Arch(gguf.MODEL_ARCH.QWEN3MOE),
        "qwen2_moe": _Arch(gguf.MODEL_ARCH.QWEN2MOE),
        "mixtral": _Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
        "olmo2": _Arch(gguf.MODEL_ARCH.OLMO2),
        "granite": _Arch(gguf.MODEL_ARCH.GRANITE, permute_qk=True),
        "smollm3": _Arch(gguf.MODEL_ARCH.SMOLLM3, permute_qk=True),
        "gpt_oss": _Arch(gguf.MODEL_ARCH.GPT_OSS),
    }
    if model_type not in table:
        raise UnsupportedModelError(
            f"GGUF export does not know architecture {model_type!r} "
            f"(supported: {', '.join(sorted(table))}); llama.cpp's convert_hf_to_gguf.py may, "
            "or serve the safetensors with the famous-native or transformers runtime"
        )
    return table[model_type]


def check_gguf_architecture(model_type: str) -> None:
    """Raise ``UnsupportedModelError`` when the GGUF writer does not know ``model_type``."""
    _arch_for(model_type)


@dataclass
class _Planned:
    gguf_name: str
    source: SourceTensor | None  # None: synthesized (rope_freqs)
    shape: tuple[int, ...]  # numpy order ([rows, cols])
    qtype: Any  # gguf.GGMLQuantizationType
    transform: str | None = None  # "permute_q" | "permute_k" | "plus_one"
    data: np.ndarray | None = None  # synthesized tensors
    fallback: str | None = None
    experts: list[SourceTensor] | None = None  # stacked into [num_experts, rows, cols]
    scale: float | None = None  # multiplied in after the transform (a folded query scale)

    @property
    def nbytes(self) -> int:
        import gguf

        block, size = gguf.GGML_QUANT_SIZES[self.qtype]
        n = math.prod(self.shape)
        return n // block * size


@dataclass
class GGUFExport:
    """What an export wrote: the file, its size and the type chosen for every tensor."""

    path: Path
    outtype: str
    size_bytes: int
    seconds: float
    architecture: str
    tensor_types: dict[str, str]
    fallbacks: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensor_types.values():
            out[t] = out.get(t, 0) + 1
        return out


# ------------------------------------------------------------------------------ helpers


def interleave_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Per head, [x_0..x_{d/2-1} ; y_0..y_{d/2-1}] rows → [x_0, y_0, x_1, y_1, …].

    ``w`` is a q/k projection weight (or bias) with ``n_heads · head_dim`` rows.
    """
    rows = w.shape[0]
    d = rows // n_heads
    rest = w.shape[1:]
    return w.reshape(n_heads, 2, d // 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def llama3_rope_factors(
    head_dim: int, theta: float, factor: float, low: float, high: float, original: int
) -> np.ndarray:
    """llama.cpp's ``rope_freqs``: the divisor of each rotary frequency under Llama-3 scaling."""
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    low_wavelen = original / low
    high_wavelen = original / high
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _role(gguf_name: str) -> TensorRole:
    block = None
    part = gguf_name
    if gguf_name.startswith("blk."):
        _, idx, part = gguf_name.split(".", 2)
        block = int(idx)
    if part.startswith("token_embd"):
        comp = "embedding"
    elif part.startswith("output.") or part == "output":
        comp = "lm_head"
    elif "norm" in part or part.endswith(".bias"):
        comp = "norm"
    elif part.startswith("attn_"):
        comp = "attention"
    elif part.startswith("ffn_"):
        comp = "feed_forward"
    else:
        comp = "other"
    return TensorRole(comp, block, gguf_name)


_QTYPE_NAMES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}


def _qtype(name: str) -> Any:
    import gguf

    return gguf.GGMLQuantizationType[_QTYPE_NAMES[name]]


def _file_type(outtype: str) -> int:
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[outtype]


# ------------------------------------------------------------------------------ the plan


def _plan(
    model_dir: Path,
    hf: dict[str, Any],
    arch: _Arch,
    outtype: str,
    tensor_type: Callable[[TensorRole], str | None] | None,
) -> tuple[list[_Planned], list[str]]:
    import gguf

    cfg = load_config(model_dir)
    a0 = cfg.blocks[0].attention
    sources = scan(model_dir)
    name_map = gguf.get_tensor_name_map(arch.gguf_arch, cfg.num_hidden_layers)
    planned: list[_Planned] = []
    warnings: list[str] = []
    unknown: list[str] = []
    groups = expert_groups(sources)
    fold = query_scale_fold(cfg)  # Gemma 2: into attn_q; Gemma 3: into its q norm
    fold_into = ("attn_q_norm.weight",) if a0.qk_norm else ("attn_q.weight", "attn_q.bias")
    expert_of = {n: merged for merged, names in groups.items() for n in names}
    stacked: set[str] = set()
    for name in sorted(sources, key=_source_order):
        src = sources[name]
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name in expert_of:  # a group is planned once, at its first member, as a stack
            merged = expert_of[name]
            if merged in stacked:
                continue
            stacked.add(merged)
            parts = [sources[n] for n in groups[merged]]
            new = name_map.get_name(merged, try_suffixes=(".weight",))
            if new is None:
                unknown.append(merged)
                continue
            shape = (len(parts), *parts[0].shape)
            planned.append(_Planned(new, parts[0], shape, None, experts=parts))
            continue
        fused = fused_expert_tensors(name, tuple(src.shape))
        if fused is not None:  # gpt-oss: stacked, transposed, gate and up interleaved
            for merged, shape, how in fused:
                new = name_map.get_name(merged, try_suffixes=(".weight", ".bias"))
                if new is None:
                    unknown.append(merged)
                    continue
                planned.append(_Planned(new, src, shape, None, how or None))
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # llama.cpp uses token_embd when output.weight is absent
        new = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:  # the map holds only this architecture's tensors
            unknown.append(name)
            continue
        if new.endswith("attn_sinks"):
            new += ".weight"  # llama.cpp's name for the per-head sink logits
        transform = None
        if arch.permute_qk and new.endswith(("attn_q.weight", "attn_q.bias")):
            transform = "permute_q"
        elif arch.permute_qk and new.endswith(("attn_k.weight", "attn_k.bias")):
            transform = "permute_k"
        elif arch.norm_plus_one and new.endswith("norm.weight"):
            transform = "plus_one"
        scale = fold if new.endswith(fold_into) else None
        planned.append(_Planned(new, src, tuple(src.shape), None, transform, scale=scale))
    if unknown:
        raise GGUFExportError(
            f"{len(unknown)} tensor(s) have no GGUF name for the "
            f"{gguf.MODEL_ARCH_NAMES[arch.gguf_arch]} "
            f"architecture: {', '.join(unknown[:6])}{' …' if len(unknown) > 6 else ''}"
        )
    rope = _global_rope(cfg)
    if rope.rope_type == "llama3":
        factors = llama3_rope_factors(
            int(a0.head_dim * rope.partial_rotary_factor),
            rope.rope_theta,
            rope.factor,
            rope.low_freq_factor,
            rope.high_freq_factor,
            rope.original_max_position_embeddings or 8192,
        )
        planned.insert(
            0,
            _Planned(
                gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                None,
                tuple(factors.shape),
                None,
                data=factors,
            ),
        )
    if rope.rope_type == "longrope":  # Phi-3: one divisor per rotary frequency, both sets
        for tensor, factors in (
            (gguf.MODEL_TENSOR.ROPE_FACTORS_LONG, rope.long_factor),
            (gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT, rope.short_factor),
        ):
            data = np.asarray(factors, dtype=np.float32)
            name = gguf.TENSOR_NAMES[tensor] + ".weight"
            planned.insert(0, _Planned(name, None, tuple(data.shape), None, data=data))
    # types
    for p in planned:
        role = _role(p.gguf_name)
        # routers and the shared expert's gate: kept F32, as llama.cpp does
        router = p.gguf_name.endswith(("ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight"))
        if len(p.shape) < 2 or role.component in ("norm", "other") or router:
            p.qtype = _qtype("f32")
            continue
        want = (tensor_type(role) if tensor_type else None) or outtype
        if want not in WRITTEN_TYPES:
            raise GGUFExportError(
                f"tensor type {want!r} is not one famous writes ({WRITTEN_TYPES})"
            )
        qtype = _qtype(want)
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        if p.shape[-1] % block:
            p.fallback = f"{want} needs rows divisible by {block}, has {p.shape[-1]}: wrote f16"
            qtype = _qtype("f16")
        p.qtype = qtype
    return planned, warnings


def _global_rope(cfg: ModelConfig) -> Any:
    """The RoPE of the full-attention layers (llama.cpp's ``rope.*`` keys; Gemma 3's sliding
    layers have their own base, ``rope.freq_base_swa``)."""
    full = [b.attention.rope for b in cfg.blocks if b.attention.sliding_window is None]
    return full[0] if full else cfg.blocks[0].attention.rope


#: Families whose llama.cpp graph runs the sliding window the export writes.
WINDOWED_FAMILIES = frozenset({"gpt_oss", "gemma2", "gemma3_text"})


def _windowed_context(cfg: ModelConfig, arch: str, warnings: list[str]) -> int:
    """The context length the GGUF declares. llama.cpp's llama / qwen2 / qwen3 / gemma / phi3
    graphs run no sliding window (phi3 reads it and then disables it), and within the
    window full attention is the windowed model exactly: such a model's GGUF declares the
    window as its context, so what llama.cpp runs by default equals the model. The gpt-oss,
    gemma2 and gemma3 graphs do run the window (the family metadata writes it)."""
    if cfg.model_type in WINDOWED_FAMILIES:
        return cfg.max_position_embeddings
    windows = {b.attention.sliding_window for b in cfg.blocks} - {None}
    short = min((w for w in windows if w < cfg.max_position_embeddings), default=None)
    if short is None:
        return cfg.max_position_embeddings
    warnings.append(
        f"config.json's sliding_window {short} is shorter than max_position_embeddings "
        f"{cfg.max_position_embeddings}, and llama.cpp's {arch!r} architecture runs no "
        f"sliding window: the GGUF declares a context of {short} tokens, within which it "
        f"answers exactly like the model (a longer context set in llama.cpp would attend past "
        "the window; serve the safetensors with famous-native or transformers for that)"
    )
    return short


def _source_order(name: str) -> tuple:
    """Embedding first, then blocks in order, then the final norm and head (llama.cpp order)."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p == "layers" and i + 1 < len(parts) and parts[i + 1].isdigit():
            return (1, int(parts[i + 1]), name)
    if "embed" in name:
        return (0, 0, name)
    return (2, 0, name)


# ------------------------------------------------------------------------------ metadata


def _write_metadata(
    writer: Any, hf: dict[str, Any], model_dir: Path, outtype: str, name: str
) -> list[str]:
    import gguf

    cfg = load_config(model_dir)
    b0 = cfg.blocks[0]
    a0 = b0.attention
    vocab = read_vocab(model_dir, cfg.vocab_size, hf)
    warnings: list[str] = []
    name = _loadable_name(name, vocab.tokens, warnings)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    arch = writer.arch
    writer.add_context_length(_windowed_context(cfg, arch, warnings))
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(b0.feed_forward.intermediate_size)
    writer.add_head_count(a0.num_attention_heads)
    writer.add_head_count_kv(a0.num_key_value_heads)
    writer.add_layer_norm_rms_eps((b0.attn_norm or cfg.final_norm).eps)
    rope = _global_rope(cfg)
    writer.add_rope_freq_base(rope.rope_theta)
    writer.add_rope_dimension_count(int(a0.head_dim * rope.partial_rotary_factor))
    if a0.head_dim * a0.num_attention_heads != cfg.hidden_size or hf.get("head_dim"):
        writer.add_key_length(a0.head_dim)
        writer.add_value_length(a0.head_dim)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(_file_type(outtype if outtype in WRITTEN_TYPES else "f16"))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if rope.rope_type == "linear" and rope.factor != 1.0:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope.factor)
    elif rope.rope_type == "longrope" and cfg.model_type == "phi3":
        warnings += _longrope_metadata(writer, cfg, rope)
    elif rope.rope_type not in ("default", "llama3") and cfg.model_type != "gpt_oss":
        raise GGUFExportError(
            f"RoPE scaling {rope.rope_type!r} is not supported by famous's GGUF exporter "
            "(supported: default, linear, llama3; longrope for phi3)"
        )
    write_family_metadata(writer, cfg.model_type, cfg)
    if cfg.model_type == "gpt_oss":
        warnings += gpt_oss_metadata(writer, cfg)
    write_vocab(writer, vocab)
    warnings.extend(vocab.warnings)
    return warnings


#: llama.cpp sets these tokens' attributes in any GGUF whose general.name says Phi-3, and
#: fails to load one whose vocabulary lacks them ("unordered_map::at").
_PHI3_NAMED_TOKENS = ("</s>", "<unk>", "<s>", "<|endoftext|>")


def _loadable_name(name: str, tokens: list[str], warnings: list[str]) -> str:
    """``name``, unless llama.cpp would take it for Phi-3's and then miss that vocabulary."""
    lowered = name.lower()
    if "phi3" not in lowered and "phi-3" not in lowered:
        return name
    missing = [t for t in _PHI3_NAMED_TOKENS if t not in set(tokens)]
    if not missing:
        return name
    safe = lowered.replace("phi-3", "phi_3").replace("phi3", "phi_3")
    warnings.append(
        f"general.name {name!r} written as {safe!r}: llama.cpp refuses a model named Phi-3 "
        f"whose vocabulary lacks {', '.join(missing)}"
    )
    return safe


def _longrope_metadata(writer: Any, cfg: ModelConfig, rope: Any) -> list[str]:
    """Phi-3's LongRoPE: the factors are tensors (``_plan``); here the cos/sin gain and the
    pretraining length, past which llama.cpp takes the long factors."""
    orig = rope.original_max_position_embeddings or cfg.max_position_embeddings
    gain = longrope_attention_factor(rope, cfg.max_position_embeddings)
    writer.add_rope_scaling_attn_factors(gain)
    writer.add_rope_scaling_orig_ctx_len(orig)
    return [
        f"LongRoPE: llama.cpp picks the long factors by the context size it is started with "
        f"(n_ctx > {orig}), transformers by the length of the sequence so far; they agree "
        f"on every token only when n_ctx <= {orig} or every sequence is longer than {orig}"
    ]


# ------------------------------------------------------------------------------ tensors


def _tensor_data(p: _Planned, n_heads: int, n_kv: int, budget: int) -> np.ndarray:
    """The bytes of one tensor, built chunk by chunk into one output array."""
    import gguf

    if p.data is not None:
        return gguf.quants.quantize(p.data, p.qtype)
    if p.experts is not None:
        return gguf.quants.quantize(np.stack([read_all(e) for e in p.experts]), p.qtype)
    if p.transform in FUSED_TRANSFORMS:
        assert p.source is not None
        return gguf.quants.quantize(apply_fused(p.transform, read_all(p.source)), p.qtype)
    src = p.source
    assert src is not None
    if p.transform in ("permute_q", "permute_k"):
        whole = read_all(src)
        whole = interleave_rope_rows(whole, n_heads if p.transform == "permute_q" else n_kv)
        return np.ascontiguousarray(gguf.quants.quantize(whole, p.qtype))
    if len(src.shape) < 2 or p.scale is not None:
        arr = read_all(src)
        if p.transform == "plus_one":
            arr = arr + 1.0
        if p.scale is not None:
            arr = (arr * np.float32(p.scale)).astype(np.float32)
        return np.ascontiguousarray(gguf.quants.quantize(arr, p.qtype))
    block, type_size = gguf.GGML_QUANT_SIZES[p.qtype]
    row_out = src.row_elems // block * type_size
    out = np.empty((src.rows, row_out), dtype=np.uint8)
    for start, stop in row_chunks(src, budget):
        chunk = read_rows(src, start, stop).reshape(stop - start, -1)
        q = gguf.quants.quantize(chunk, p.qtype)
        out[start:stop] = np.ascontiguousarray(q).view(np.uint8).reshape(stop - start, row_out)
        del chunk, q
    return out


def export_gguf(
    model_dir: str | Path,
    out_path: str | Path,
    outtype: str = "f16",
    *,
    tensor_type: Callable[[TensorRole], str | None] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    chunk_bytes: int = 64 << 20,
    progress: Callable[[str, int, int], None] | None = None,
    threads: int | None = None,
    quantizer: Path | None = None,
) -> GGUFExport:
    """Convert the Hub model in ``model_dir`` to ``out_path``.

    K-quants (``LLAMA_CPP_TYPES``) are llama.cpp's: ``quantizer`` is a ``llama-quantize``
    program (famous's llama.cpp build has one), else llama-cpp-python's library does it.

    ``outtype``: one of ``GGUF_TYPES``. ``tensor_type(role)`` may return a per-tensor type
    (from ``WRITTEN_TYPES``) or None for ``outtype`` — how a recipe's overrides become a
    mixed-type GGUF. The file appears only when complete (written to ``*.partial``, then
    renamed); an existing ``out_path`` is refused unless ``overwrite``.
    """
    import json

    model_dir = Path(model_dir)
    out_path = Path(out_path)
    outtype = outtype.lower()
    if outtype not in GGUF_TYPES:
        raise GGUFExportError(
            f"unknown GGUF type {outtype!r}; choose one of {', '.join(GGUF_TYPES)}"
        )
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True (--force) to replace it")
    started = time.monotonic()
    if outtype in LLAMA_CPP_TYPES:
        return _export_kquant(
            model_dir,
            out_path,
            outtype,
            tensor_type=tensor_type,
            name=name,
            started=started,
            chunk_bytes=chunk_bytes,
            progress=progress,
            threads=threads,
            quantizer=quantizer,
        )
    import gguf

    hf = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = _arch_for(str(hf.get("model_type")))
    try:
        check_exportable(str(hf.get("model_type")), load_config(model_dir))
    except FamilyExportError as e:
        raise GGUFExportError(str(e)) from e
    planned, warnings = _plan(model_dir, hf, arch, outtype, tensor_type)
    cfg = load_config(model_dir)
    n_heads = cfg.blocks[0].attention.num_attention_heads
    n_kv = cfg.blocks[0].attention.num_key_value_heads

    partial = out_path.with_name(out_path.name + ".partial")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(partial, gguf.MODEL_ARCH_NAMES[arch.gguf_arch])
    try:
        warnings += _write_metadata(writer, hf, model_dir, outtype, name or model_dir.name)
        for p in planned:
            writer.add_tensor_info(
                p.gguf_name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=p.qtype
            )
        writer.write_header_to_file(path=partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, p in enumerate(planned):
            data = _tensor_data(p, n_heads, n_kv, chunk_bytes)
            if data.nbytes != p.nbytes:
                raise GGUFExportError(
                    f"{p.gguf_name}: wrote {data.nbytes} bytes, planned {p.nbytes}"
                )
            writer.write_tensor_data(data)
            del data
            if progress:
                progress(p.gguf_name, i + 1, len(planned))
        writer.close()
        os.replace(partial, out_path)
    except BaseException:
        try:
            writer.close()
        finally:
            partial.unlink(missing_ok=True)
        raise
    return GGUFExport(
        path=out_path,
        outtype=outtype,
        size_bytes=out_path.stat().st_size,
        seconds=time.monotonic() - started,
        architecture=gguf.MODEL_ARCH_NAMES[arch.gguf_arch],
        tensor_types={p.gguf_name: p.qtype.name for p in planned},
        fallbacks={p.gguf_name: p.fallback for p in planned if p.fallback},
        warnings=warnings,
    )


def _export_kquant(
    model_dir: Path,
    out_path: Path,
    outtype: str,
    *,
    tensor_type: Callable[[TensorRole], str | None] | None,
    name: str | None,
    started: float,
    chunk_bytes: int,
    progress: Callable[[str, int, int], None] | None,
    threads: int | None,
    quantizer: Path | None = None,
) -> GGUFExport:
    """F16 by famous, then llama.cpp's quantizer (which falls back per tensor where a row
    width is not a multiple of 256)."""
    f16 = out_path.with_name(out_path.name + ".f16.partial")
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        base = export_gguf(
            model_dir,
            f16,
            "f16",
            tensor_type=tensor_type,
            name=name,
            overwrite=True,
            chunk_bytes=chunk_bytes,
            progress=progress,
        )
        if quantizer is not None:
            quantize_with_program(quantizer, f16, partial, outtype, threads=threads)
        else:
            quantize_with_llama_cpp(f16, partial, outtype, threads=threads)
        os.replace(partial, out_path)
    finally:
        f16.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return GGUFExport(
        path=out_path,
        outtype=outtype,
        size_bytes=out_path.stat().st_size,
        seconds=time.monotonic() - started,
        architecture=base.architecture,
        tensor_types=tensor_types(out_path),
        fallbacks={},
        warnings=base.warnings,
    )


def quantize_with_program(
    program: Path, src: Path, dst: Path, outtype: str, threads: int | None = None
) -> None:
    """Run a ``llama-quantize`` binary (``llama-quantize SRC DST TYPE THREADS``)."""
    import subprocess

    argv = [
        str(program),
        str(src),
        str(dst),
        outtype.upper(),
        str(threads or min(4, os.cpu_count() or 1)),
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise GGUFExportError(f"cannot run llama.cpp's quantizer {program}: {e}") from e
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-2000:]
        raise GGUFExportError(
            f"llama.cpp's quantizer failed on {src} (exit {result.returncode}):\n{tail}"
        )


def quantize_with_llama_cpp(src: Path, dst: Path, outtype: str, threads: int | None = None) -> None:
    """Run llama.cpp's own quantizer (``llama_model_quantize``) on a GGUF file."""
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise GGUFExportError(
            f"{outtype} is made by llama.cpp's quantizer: pip install 'famous[llamacpp]'"
        ) from e
    ftype = {
        "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "q5_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
        "q6_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
    }[outtype]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or min(4, os.cpu_count() or 1)
    with _captured_fds() as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    log.unlink(missing_ok=True)
    if rc != 0:
        raise GGUFExportError(f"llama.cpp's quantizer failed on {src} (return code {rc}):\n{tail}")


class _captured_fds:
    """Send the C library's stdout / stderr (llama.cpp logs per tensor) to a temp file."""

    def __enter__(self) -> Path:
        import sys
        import tempfile

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        fd, name = tempfile.mkstemp(prefix="famous-llama-quantize-", suffix=".log")
        self.path = Path(name)
        self.saved = []
        for target in (1, 2):
            try:
                self.saved.append((target, os.dup(target)))
                os.dup2(fd, target)
            except OSError:
                pass
        os.close(fd)
        return self.path

    def __exit__(self, *exc: object) -> None:
        for target, saved in self.saved:
            os.dup2(saved, target)
            os.close(saved)


def export_recipe_gguf(
    model_dir: str | Path, out: Path, recipe: Any, *, export: Any = None, overwrite: bool = False
) -> GGUFExport:
    """Write the GGUF a quantization recipe describes (per-tensor types from its overrides)."""
    recipe = get_recipe(recipe)
    recipe.check_target("gguf")
    n_blocks = int(read_config_json(model_dir)["num_hidden_layers"])

    def tensor_type(role: TensorRole) -> str | None:
        return recipe.gguf_tensor_type(role.component, role.block, n_blocks)

    return (export or export_gguf)(
        model_dir, out, recipe.gguf_outtype(), tensor_type=tensor_type, overwrite=overwrite
    )
