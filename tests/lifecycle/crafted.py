"""GGUF bytes written by hand: hostile headers (counts, lengths and extents that lie) and big
sparse files, which gguf.GGUFWriter cannot make."""

from __future__ import annotations

import struct
from pathlib import Path

U32, U64, STRING, ARRAY = 4, 10, 8, 9
F16 = 1


def string(text: str | bytes, length: int | None = None) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data) if length is None else length) + data


def kv(key: str, vtype: int, value: object) -> bytes:
    """One key-value pair: a u32, u64 or string value, or ``(item type, [items])``."""
    head = string(key) + struct.pack("<I", vtype)
    if vtype == U32:
        return head + struct.pack("<I", value)
    if vtype == U64:
        return head + struct.pack("<Q", value)
    if vtype == STRING:
        return head + string(str(value))
    item_type, items = value  # type: ignore[misc]
    return head + struct.pack("<IQ", item_type, len(items)) + b"".join(items)


def tensor_info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    packed = struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
    return string(name) + packed + struct.pack("<IQ", ggml_type, offset)


def header(
    kvs: list[bytes],
    tensors: list[bytes],
    *,
    version: int = 3,
    kv_count: int | None = None,
    tensor_count: int | None = None,
) -> bytes:
    """The header up to the (32-byte aligned) start of the tensor data."""
    out = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    out += b"".join(kvs) + b"".join(tensors)
    return out + b"\0" * (-len(out) % 32)


def model_kvs(name: str) -> list[bytes]:
    return [
        kv("general.architecture", STRING, "llama"),
        kv("general.name", STRING, name),
        kv("general.file_type", U32, F16),
        kv("llama.context_length", U32, 2048),
        kv("llama.block_count", U32, 2),
        kv("llama.embedding_length", U32, 64),
        kv("llama.attention.head_count", U32, 4),
    ]


def gguf(name: str = "crafted", data_bytes: int = 4096) -> tuple[bytes, int]:
    """A well-formed F16 GGUF file's header, and the size of its tensor data."""
    tensors = [tensor_info("token_embd.weight", [data_bytes // 2], F16, 0)]
    return header(model_kvs(name), tensors), data_bytes


def write_sparse(path: Path, name: str, data_bytes: int) -> Path:
    """A valid GGUF file of ``data_bytes`` zero tensor bytes that takes no disk space."""
    head, size = gguf(name, data_bytes)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + size)
    return path
