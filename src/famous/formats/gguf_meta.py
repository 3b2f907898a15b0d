"""Read a GGUF file's metadata header without loading tensors or importing numpy.

The serving path needs a few keys (architecture, pooling type, chat template) to decide how
to launch llama.cpp; the Hub path reads the header of a file it has only the start of
(``partial=True``) to learn a repo's architecture and quantization before downloading it;
``famous import`` checks a whole file (``check_file``) before it registers it.

Every length read from a file is checked against the bytes left before anything is read or
allocated, so a hostile header (a string or array "of 2^62 bytes") fails fast and cheaply.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from famous.errors import InvalidInput

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
_STRUCTS = {fmt: struct.Struct(fmt) for fmt in {*_SCALARS.values(), "<I", "<Q"}}
_U64 = _STRUCTS["<Q"]
_STRING = 8
_ARRAY = 9
# Arrays longer than this (token lists, merges) are skipped, not materialized.
_MAX_ARRAY_KEPT = 64
_MAX_NESTING = 4  # arrays of arrays of …: deeper is not a real model, and would recurse
_MAX_STRING = 1 << 28
KNOWN_VERSIONS = (2, 3)
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
DEFAULT_ALIGNMENT = 32
# The smallest encodings: a key-value pair (empty key, u8 value) and a tensor info (empty
# name, no dimensions); a count that needs more bytes than the file has is a lie.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8
# ggml type id → (elements per block, bytes per block), as ggml's type traits say.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
}


class GGUFError(InvalidInput, ValueError):
    """The file is not a GGUF file famous can read."""


_TRUNCATED = "truncated GGUF header"


class _Reader:
    """A binary file with a known end: lengths are checked before any read or allocation."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.pos = fh.tell()
        self.end = fh.seek(0, os.SEEK_END)
        fh.seek(self.pos)

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, size: int) -> bytes:
        if size > self.left:
            raise GGUFError(_TRUNCATED)
        data = self.fh.read(size)
        if len(data) != size:
            raise GGUFError(_TRUNCATED)
        self.pos += size
        return data

    def skip(self, size: int) -> None:
        if size > self.left:
            raise GGUFError(_TRUNCATED)
        self.pos = self.fh.seek(size, os.SEEK_CUR)

    def read(self, fmt: str) -> Any:
        packed = _STRUCTS[fmt]
        return packed.unpack(self.take(packed.size))[0]

    def _string_length(self) -> int:
        (length,) = _U64.unpack(self.take(8))
        if length > _MAX_STRING:
            raise GGUFError("implausible string length in GGUF header")
        return length

    def string(self) -> str:
        return self.take(self._string_length()).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool = True, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.read(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth >= _MAX_NESTING:
                raise GGUFError("GGUF arrays nested too deeply")
            item_type = self.read("<I")
            count = self.read("<Q")
            keep_items = keep and count <= _MAX_ARRAY_KEPT
            if item_type in _SCALARS and not keep_items:
                self.skip(_STRUCTS[_SCALARS[item_type]].size * count)  # not decoded
                return None
            if count > self.left:  # every item takes at least one byte
                raise GGUFError(_TRUNCATED)
            if item_type == _STRING and not keep_items:  # a vocabulary: skipped unread
                for _ in range(count):
                    self.skip(self._string_length())
                return None
            items = [self.value(item_type, keep_items, depth + 1) for _ in range(count)]
            return items if keep_items else None
        raise GGUFError(f"unknown GGUF value type {vtype}")


def read_metadata(source: PathOrFile, partial: bool = False) -> dict[str, Any]:
    """Every metadata key of a GGUF file (long arrays such as the vocabulary are None).

    ``source`` is a path or an open, seekable binary file. With ``partial``, a header cut
    short (only the start of the file was fetched) gives the keys read so far and
    ``"GGUF.complete": False`` instead of an error.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as fh:
            return _read_metadata(_Reader(fh), str(source), partial)
    return _read_metadata(_Reader(source), "the GGUF data", partial)


def _read_metadata(r: _Reader, name: str, partial: bool) -> dict[str, Any]:
    if r.left < 4 or r.take(4) != b"GGUF":
        raise GGUFError(f"{name} is not a GGUF file (bad magic)")
    try:
        version = r.read("<I")
        if version < 2:
            raise GGUFError(f"{name}: GGUF version {version} is too old")
        tensor_count = r.read("<Q")
        kv_count = r.read("<Q")
    except GGUFError as exc:
        raise GGUFError(f"{name}: {exc}") from None
    meta: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": tensor_count}
    need = kv_count * _MIN_KV_BYTES + tensor_count * _MIN_TENSOR_INFO_BYTES
    if not partial and need > r.left:
        raise GGUFError(
            f"{name}: the header claims {kv_count} metadata keys and {tensor_count} tensors, "
            f"more than a file of {r.end} bytes can hold"
        )
    try:
        for _ in range(kv_count):
            key = r.string()
            vtype = r.read("<I")
            meta[key] = r.value(vtype)
    except GGUFError as exc:
        if not (partial and str(exc) == _TRUNCATED):
            raise GGUFError(f"{name}: {exc}") from None
        meta["GGUF.complete"] = False
        return meta
    meta["GGUF.complete"] = True
    return meta


def tensor_bytes(ggml_type: int, dims: list[int]) -> int | None:
    """Bytes of a tensor's data; None for a type famous does not know (a newer ggml's)."""
    sizes = GGML_TYPE_SIZES.get(ggml_type)
    if sizes is None:
        return None
    block, type_size = sizes
    elements = math.prod(dims)
    if dims and dims[0] % block:
        raise GGUFError(f"a row of {dims[0]} elements is not whole blocks of {block}")
    return elements // block * type_size


def check_file(path: str | Path) -> dict[str, Any]:
    """The metadata of a whole GGUF file, after checking it is one: magic, a known version,
    counts the file can hold, and every tensor's data inside the file. Raises GGUFError
    saying what is wrong (a truncated download, random bytes, a hostile header)."""
    name = str(path)
    with open(path, "rb") as fh:
        r = _Reader(fh)
        meta = _read_metadata(r, name, partial=False)
        if meta["GGUF.version"] not in KNOWN_VERSIONS:
            raise GGUFError(
                f"{name}: GGUF version {meta['GGUF.version']} is newer than famous reads "
                f"(it knows {', '.join(map(str, KNOWN_VERSIONS))})"
            )
        alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise GGUFError(f"{name}: general.alignment {alignment!r} is not a power of two")
        tensors = []
        try:
            for _ in range(meta["GGUF.tensor_count"]):
                tensor = r.string()
                n_dims = r.read("<I")
                if n_dims > MAX_DIMS:
                    raise GGUFError(f"tensor {tensor!r} has {n_dims} dimensions (at most 4)")
                dims = [r.read("<Q") for _ in range(n_dims)]
                tensors.append((tensor, dims, r.read("<I"), r.read("<Q")))
        except GGUFError as exc:
            raise GGUFError(f"{name}: tensor table: {exc}") from None
        data_start = -(-r.pos // alignment) * alignment
    for tensor, dims, ggml_type, offset in tensors:
        try:
            size = tensor_bytes(ggml_type, dims)
        except GGUFError as exc:
            raise GGUFError(f"{name}: tensor {tensor!r}: {exc}") from None
        if offset % alignment:
            raise GGUFError(f"{name}: tensor {tensor!r} starts off its {alignment}-byte alignment")
        end = data_start + offset + (size or 0)
        if end > r.end:
            raise GGUFError(
                f"{name}: tensor {tensor!r} ends at byte {end}, past the end of the file "
                f"({r.end} bytes): the file is truncated or not a model"
            )
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


def template_renders_tools(meta: dict[str, Any]) -> bool:
    """Whether the GGUF's chat templates can show the model its tools: a template that
    never names ``tools`` renders none (SmolLM2's), whatever the request lists."""
    templates = (meta.get("tokenizer.chat_template"), meta.get("tokenizer.chat_template.tool_use"))
    return any(isinstance(t, str) and "tools" in t for t in templates)


def context_length(meta: dict[str, Any]) -> int | None:
    arch = architecture(meta)
    value = meta.get(f"{arch}.context_length") if arch else None
    return value if isinstance(value, int) else None


def kv_bytes_per_token(meta: dict[str, Any]) -> int | None:
    """The f16 KV cache one token of context takes: K and V × layers × kv heads × head dim
    × 2 bytes; None when the header does not say."""
    arch = architecture(meta) or ""
    layers = meta.get(f"{arch}.block_count")
    heads = meta.get(f"{arch}.attention.head_count")
    embd = meta.get(f"{arch}.embedding_length")
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, embd)):
        return None
    kv_heads = meta.get(f"{arch}.attention.head_count_kv") or heads
    if isinstance(kv_heads, list):  # per-layer counts (some hybrid models): the widest
        kv_heads = max((h for h in kv_heads if isinstance(h, int)), default=heads)
    return 2 * layers * int(kv_heads) * (embd // heads) * 2


@functools.lru_cache(maxsize=64)
def _cached(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    del size, mtime_ns  # the cache key: a rewritten file is read again
    try:
        return read_metadata(path)
    except (OSError, GGUFError):
        return {}


def cached_metadata(path: str | Path) -> dict[str, Any]:
    """A GGUF's header, read once per version of the file ({} when unreadable): it holds
    the whole vocabulary, too slow to read for every launch setting or memory estimate.
    Callers must not change the dict."""
    try:
        stat = Path(path).stat()
    except OSError:
        return {}
    return _cached(str(path), stat.st_size, stat.st_mtime_ns)
