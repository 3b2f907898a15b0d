"""Quantized stand-ins for ``nn.Linear`` and ``nn.Embedding`` and applying a recipe to a model.

Storage is real (int8 tensors; int4 packed two per byte; fp16 / bf16 casts), so the size a
report prints is the size the weights take. Compute is weight-only (dequantize, then the
float matmul in the activation dtype) except dynamic int8, which quantizes each token's
activations to int8 and multiplies integers (``torch._int_mm`` where the CPU build has it).

Symmetric quantization: int8 ``q = round(w / s)``, ``s = max|w| / 127`` (per output channel
or per block); int4 ``s = max|w| / 7``, ``q ∈ [-8, 7]`` per block of the input dimension.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from famous.genai.quantize.recipe import QuantSpec, Recipe

_FLOAT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7], [rows, cols] with cols even → uint8 [rows, cols / 2], the
    layout famous's int4 GEMV streams: in each group of 32 values (a last group may be
    shorter, g values), byte j holds value j + 8 in its low nibble and value j + g / 2 + 8
    in its high nibble, so one 16-byte load widens into two runs of consecutive values."""
    u = (q + 8).to(torch.uint8)
    full, parts = u.shape[-1] // 32 * 32, []
    if full:
        groups = u[..., :full].unflatten(-1, (-1, 2, 16))
        parts.append((groups[..., 0, :] | (groups[..., 1, :] << 4)).flatten(-2))
    if full < u.shape[-1]:
        lo, hi = u[..., full:].chunk(2, dim=-1)
        parts.append(lo | (hi << 4))
    return torch.cat(parts, dim=-1)


def _unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_pack_int4`` over the last dimension (any leading shape): whole
    groups in one reshape, so a prefill's dequantization is a few tensor ops."""
    full, parts = p.shape[-1] // 16 * 16, []
    if full:
        groups = p[..., :full].unflatten(-1, (-1, 16))
        parts.append(torch.stack((groups & 0x0F, groups >> 4), dim=-2).flatten(-3))
    if full < p.shape[-1]:
        tail = p[..., full:]
        parts.append(torch.cat((tail & 0x0F, tail >> 4), dim=-1))
    return torch.cat(parts, dim=-1).to(torch.int8) - 8


class QuantizedWeight(nn.Module):
    """A 2-D weight [rows, cols] stored per ``spec``; ``dequantize()`` gives it back."""

    def __init__(self, w: torch.Tensor, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec
        self.shape = tuple(w.shape)
        self.out_dtype = w.dtype
        w = w.detach().float()
        rows, cols = w.shape
        if spec.dtype in _FLOAT:
            self.register_buffer("data", w.to(_FLOAT[spec.dtype]))
            return
        qmax = 127.0 if spec.dtype == "int8" else 7.0
        if spec.granularity == "channel":
            scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
            q = torch.round(w / scale).clamp(-qmax, qmax).to(torch.int8)
            self.register_buffer("data", q)
            self.register_buffer("scale", scale)
            return
        b = int(spec.block_size)
        pad = (-cols) % b
        wp = F.pad(w, (0, pad)) if pad else w
        blocks = wp.reshape(rows, -1, b)
        scale = blocks.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / qmax
        q = torch.round(blocks / scale).clamp(-qmax - (1 if spec.dtype == "int4" else 0), qmax)
        q = q.to(torch.int8)
        # int4 rows are [rows, padded cols / 2] bytes (what the GEMV streams), int8 blocks
        # [rows, blocks, block]; the scales [rows, blocks, 1] either way
        packed = _pack_int4(q.reshape(rows, -1)) if spec.dtype == "int4" else q
        self.register_buffer("data", packed)
        self.register_buffer("scale", scale.to(torch.float16))

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.out_dtype
        spec = self.spec
        if spec.dtype in _FLOAT:
            return self.data.to(dtype)
        # one fp32 tensor, scaled in place: a prefill's dequantization writes it once
        if spec.granularity == "channel":
            return self.data.float().mul_(self.scale).to(dtype)
        q = self._blocks(self.data)
        w = q.float().mul_(self.scale.float()).reshape(self.shape[0], -1)
        return w[:, : self.shape[1]].to(dtype)

    def _blocks(self, data: torch.Tensor) -> torch.Tensor:
        """Stored rows (any leading shape) as int8 [..., blocks, block]."""
        if self.spec.dtype != "int4":
            return data
        q = _unpack_int4(data)
        return q.reshape(*q.shape[:-1], -1, int(self.spec.block_size))

    def rows(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Dequantized rows ``index`` only (an embedding lookup)."""
        spec = self.spec
        if spec.dtype in _FLOAT:
            return self.data[index].to(dtype)
        if spec.granularity == "channel":
            return (self.data[index].float() * self.scale[index]).to(dtype)
        q = self._blocks(self.data[index])
        w = q.float() * self.scale[index].float()
        return w.flatten(-2)[..., : self.shape[1]].to(dtype)


def _int_mm_ok() -> bool:
    try:
        a = torch.ones(32, 32, dtype=torch.int8)
        return bool((torch._int_mm(a, a) == 32).all())
    except Exception:
        return False


_INT_MM: bool | None = None


class QuantLinear(nn.Module):
    """``nn.Linear`` with a quantized weight. ``.weight`` dequantizes (for code that reads the
    weight directly, such as famous's LM head)."""

    def __init__(self, linear: nn.Linear, spec: QuantSpec) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.qweight = QuantizedWeight(linear.weight, spec)
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        )
        self.spec = spec
        self._cache: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.activations == "int8":
            return self._dynamic_int8(x)
        return F.linear(
            x,
            self.qweight.dequantize(x.dtype),
            None if self.bias is None else self.bias.to(x.dtype),
        )

    def _dynamic_int8(self, x: torch.Tensor) -> torch.Tensor:
        global _INT_MM
        if _INT_MM is None:
            _INT_MM = _int_mm_ok()
        shape = x.shape
        xf = x.reshape(-1, shape[-1]).float()
        sx = xf.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        xq = torch.round(xf / sx).clamp(-127, 127).to(torch.int8)
        qw = self.qweight
        if qw.spec.granularity == "channel":
            wq, sw = qw.data, qw.scale.reshape(1, -1)
        else:  # blockwise int8 weights: fold the block scales back to per-element
            w = qw.dequantize(torch.float32)
            sw = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12).reshape(1, -1) / 127.0
            wq = torch.round(w / sw.reshape(-1, 1)).clamp(-127, 127).to(torch.int8)
        if _INT_MM and xq.shape[0] > 16:
            acc = torch._int_mm(xq, wq.t().contiguous()).float()
        else:
            acc = xq.float() @ wq.float().t()
        y = acc * sx * sw
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)


class QuantEmbedding(nn.Module):
    def __init__(self, emb: nn.Embedding, spec: QuantSpec) -> None:
        super().__init__()
        if spec.activations == "int8":
            spec = QuantSpec(dtype="int8")  # a lookup has no activations to quantize
        self.num_embeddings, self.embedding_dim = emb.num_embeddings, emb.embedding_dim
        self.qweight = QuantizedWeight(emb.weight, spec)
        self.spec = spec

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.dequantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qweight.rows(ids, self.qweight.out_dtype)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and quantized buffer (RoPE tables and caches excluded)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, QuantizedWeight):
            total += m.nbytes()
    return total


def _swap(parent: nn.Module, name: str, new: nn.Module) -> None:
    setattr(parent, name, new)


def apply_recipe(model: nn.Module, recipe: Recipe) -> list[tuple[str, str]]:
    """Quantize a famous ``DecoderModel`` in place; returns (module, spec label) per weight.

    With tied embeddings the LM head reads the embedding's weight, so the embedding's spec
    applies to both.
    """
    done: list[tuple[str, str]] = []
    layers = list(model.layers)
    n = len(layers)

    def quant_linear(parent: nn.Module, attr: str, spec: QuantSpec, label: str) -> None:
        lin = getattr(parent, attr)
        if spec.dtype == "fp32" and spec.activations == "none":
            return
        _swap(parent, attr, QuantLinear(lin, spec))
        done.append((label, spec.label))

    for i, layer in enumerate(layers):  # refuse before changing anything
        f = recipe.spec_for("feed_forward", i, n)
        dense = isinstance(getattr(layer.ffn, "gate_up", None), nn.Linear)
        if not dense and not (f.dtype == "fp32" and f.activations == "none"):
            raise NotImplementedError(
                f"layers.{i}.ffn: famous's eager quantization covers dense feed-forwards "
                "only, not mixture-of-experts weights; export GGUF (its quantizers handle "
                "experts) or keep feed_forward at fp32 in the recipe"
            )
    emb_spec = recipe.spec_for("embedding")
    if emb_spec.dtype != "fp32":
        model.embed = QuantEmbedding(model.embed, emb_spec)
        done.append(("embed", model.embed.spec.label))
    for i, layer in enumerate(layers):
        a = recipe.spec_for("attention", i, n)
        f = recipe.spec_for("feed_forward", i, n)
        quant_linear(layer.attn, "qkv", a, f"layers.{i}.attn.qkv")
        quant_linear(layer.attn, "o", a, f"layers.{i}.attn.o")
        quant_linear(layer.ffn, "gate_up", f, f"layers.{i}.ffn.gate_up")
        quant_linear(layer.ffn, "down", f, f"layers.{i}.ffn.down")
    if getattr(model, "lm_head", None) is not None:
        quant_linear(model, "lm_head", recipe.spec_for("lm_head"), "lm_head")
    return done


_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|blocks)\.(\d+)\.")


def apply_to_linears(module: nn.Module, recipe: Recipe) -> int:
    """Quantize every ``nn.Linear`` of any module (an encoder such as MiniLM): names with
    ``attention`` use the attention spec, ``intermediate`` / ``output`` the feed-forward
    spec, the rest the default; inside a numbered block (``layer.3.``) the recipe's block
    overrides apply as they do to a decoder. Returns how many layers were replaced."""
    names = [name for name, _ in module.named_modules()]
    found = [_BLOCK_INDEX.search(n) for n in names]
    n_blocks = max((int(m.group(1)) + 1 for m in found if m), default=None)
    count = 0
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if not isinstance(sub, nn.Linear):
                continue
            full = f"{name}.{attr}" if name else attr
            m = _BLOCK_INDEX.search(full)
            block = int(m.group(1)) if m else None
            if "attention" in full:
                spec = recipe.spec_for("attention", block, n_blocks)
            elif "intermediate" in full or full.endswith("output.dense"):
                spec = recipe.spec_for("feed_forward", block, n_blocks)
            else:
                spec = recipe.default
            if spec.dtype == "fp32" and spec.activations == "none":
                continue
            setattr(child, attr, QuantLinear(sub, spec))
            count += 1
    return count
