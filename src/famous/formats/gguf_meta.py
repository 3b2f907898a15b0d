"""Read a GGUF file's metadata header without loading tensors or importing numpy.

The serving path needs a few keys (architecture, pooling type, chat template) to decide how
to launch llama.cpp; the Hub path reads the header of a file it has only the start of
(``partial=True``) to learn a repo's architecture and quantization before downloading it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

PathOrFile = str | Path | BinaryIO

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING = 8
_ARRAY = 9
# Arrays longer than this (token lists, merges) are skipped, not materialized.
_MAX_ARRAY_KEPT = 64


class GGUFError(ValueError):
    """The file is not a GGUF file famous can read."""


_TRUNCATED = "truncated GGUF header"


def _take(fh: BinaryIO, size: int) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise GGUFError(_TRUNCATED)
    return data


def _read(fh: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _take(fh, struct.calcsize(fmt)))[0]


def _read_string(fh: BinaryIO) -> str:
    length = _read(fh, "<Q")
    if length > 1 << 28:
        raise GGUFError("implausible string length in GGUF header")
    return _take(fh, length).decode("utf-8", errors="replace")


def _read_value(fh: BinaryIO, vtype: int, keep: bool = True) -> Any:
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == _STRING:
        return _read_string(fh)
    if vtype == _ARRAY:
        item_type = _read(fh, "<I")
        count = _read(fh, "<Q")
        keep_items = keep and count <= _MAX_ARRAY_KEPT
        if item_type in _SCALARS and not keep_items:
            _take(fh, struct.calcsize(_SCALARS[item_type]) * count)  # skipped, not decoded
            return None
        items = [_read_value(fh, item_type, keep_items) for _ in range(count)]
        return items if keep_items else None
    raise GGUFError(f"unknown GGUF value type {vtype}")


def read_metadata(source: PathOrFile, partial: bool = False) -> dict[str, Any]:
    """Every metadata key of a GGUF file (long arrays such as the vocabulary are None).

    ``source`` is a path or an open binary file. With ``partial``, a header cut short (only
    the start of the file was fetched) gives the keys read so far and
    ``"GGUF.complete": False`` instead of an error.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as fh:
            return _read_metadata(fh, str(source), partial)
    return _read_metadata(source, "the GGUF data", partial)


def _read_metadata(fh: BinaryIO, name: str, partial: bool) -> dict[str, Any]:
    if fh.read(4) != b"GGUF":
        raise GGUFError(f"{name} is not a GGUF file (bad magic)")
    version = _read(fh, "<I")
    if version < 2:
        raise GGUFError(f"{name}: GGUF version {version} is too old")
    tensor_count = _read(fh, "<Q")
    kv_count = _read(fh, "<Q")
    meta: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": tensor_count}
    try:
        for _ in range(kv_count):
            key = _read_string(fh)
            vtype = _read(fh, "<I")
            meta[key] = _read_value(fh, vtype)
    except GGUFError as exc:
        if not (partial and str(exc) == _TRUNCATED):
            raise
        meta["GGUF.complete"] = False
        return meta
    meta["GGUF.complete"] = True
    return meta


# llama.cpp's enum llama_pooling_type
POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
EMBEDDING_ARCHITECTURES = {
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "jina-bert-v3",
    "modern-bert",
    "neo-bert",
    "eurobert",
    "t5encoder",
    "gemma-embedding",
}


def architecture(meta: dict[str, Any]) -> str | None:
    arch = meta.get("general.architecture")
    return arch if isinstance(arch, str) else None


def pooling_type(meta: dict[str, Any]) -> str | None:
    arch = architecture(meta)
    value = meta.get(f"{arch}.pooling_type") if arch else None
    return POOLING_NAMES.get(value) if isinstance(value, int) else None


def is_embedding_model(meta: dict[str, Any]) -> bool:
    """An encoder architecture, or any model that declares a pooling type other than none."""
    pool = pooling_type(meta)
    return architecture(meta) in EMBEDDING_ARCHITECTURES or (pool not in (None, "none"))


def has_chat_template(meta: dict[str, Any]) -> bool:
    return bool(meta.get("tokenizer.chat_template"))


def context_length(meta: dict[str, Any]) -> int | None:
    arch = architecture(meta)
    value = meta.get(f"{arch}.context_length") if arch else None
    return value if isinstance(value, int) else None
