"""GGML tensor bytes → a float32 torch tensor.

The float types and the legacy 32-value block quants are decoded here with torch (whole
tensors at once, fast); the other block types (K-quants, Q5_x, IQ…) go through the ``gguf``
package's numpy dequantizer. Block layouts (llama.cpp's ``ggml-common.h``), each block 32
values of one row:

* ``Q8_0``: fp16 scale ``d``, 32 × int8 ``q``; ``x = d·q``.
* ``Q4_0``: fp16 ``d``, 16 bytes; value ``j`` is the low nibble of byte ``j`` and value
  ``j+16`` its high nibble, ``x = d·(q − 8)``.
* ``Q4_1``: fp16 ``d``, fp16 ``m``, 16 bytes (nibbles as Q4_0); ``x = d·q + m``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from famous.genai.errors import CheckpointError
from famous.genai.gguf_source.reader import ggml_type_name

if TYPE_CHECKING:
    import torch

F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30
# decoded by the gguf package (numpy)
_BY_GGUF = ("Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", *_BY_GGUF)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(blocks, 16) bytes → (blocks, 32) float values: low nibbles first, then high."""
    import torch

    out = torch.empty(qs.shape[0], 32, dtype=torch.uint8)
    torch.bitwise_and(qs, 0x0F, out=out[:, :16])
    torch.bitwise_right_shift(qs, 4, out=out[:, 16:])
    return out.float()


def _blocks(raw: torch.Tensor, block_bytes: int) -> torch.Tensor:
    return raw.reshape(-1, block_bytes)


def _f16(b: torch.Tensor) -> torch.Tensor:
    """(blocks, 2) bytes → (blocks, 1) float32."""
    import torch

    return b.contiguous().view(torch.float16).float()


def dequantize(raw: bytes, ggml_type: int, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """The float32 values of one tensor (``shape`` in torch order)."""
    import torch

    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    if ggml_type == F32:
        out = data.view(torch.float32)
    elif ggml_type == F16:
        out = data.view(torch.float16).float()
    elif ggml_type == BF16:
        out = data.view(torch.bfloat16).float()
    elif ggml_type == Q8_0:
        b = _blocks(data, 34)
        out = _f16(b[:, :2]) * b[:, 2:].contiguous().view(torch.int8).float()
    elif ggml_type == Q4_0:
        b = _blocks(data, 18)
        out = _nibbles(b[:, 2:]).sub_(8.0).mul_(_f16(b[:, :2]))
    elif ggml_type == Q4_1:
        b = _blocks(data, 20)
        out = _nibbles(b[:, 4:]).mul_(_f16(b[:, :2])).add_(_f16(b[:, 2:4]))
    elif ggml_type_name(ggml_type) in _BY_GGUF:
        out = _with_gguf(raw, ggml_type)
    else:
        raise CheckpointError(
            f"tensor {name!r} is {ggml_type_name(ggml_type)}, a GGML type famous cannot "
            f"dequantize (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    return out.reshape(shape)


def _with_gguf(raw: bytes, ggml_type: int) -> torch.Tensor:
    import gguf
    import numpy as np
    import torch

    qtype = gguf.GGMLQuantizationType(ggml_type)
    _, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, block_bytes)
    return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(blocks, qtype)))
