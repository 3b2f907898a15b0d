"""Read safetensors checkpoints tensor by tensor (and row-chunk by row-chunk) with plain file
reads: no mmap, so a tensor's pages leave memory as soon as it is written out.

The exporters use this to convert a model larger than free RAM: at any moment only one
tensor (or a slice of it) is in memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from famous.genai.errors import CheckpointError, TruncatedCheckpointError

# safetensors dtype → (numpy dtype as stored, bytes per element)
_DTYPES: dict[str, tuple[str, int]] = {
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),  # numpy has no bfloat16: read the bits, widen to float32
    "F64": ("<f8", 8),
}


@dataclass(frozen=True)
class SourceTensor:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in ``file``
    nbytes: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_elems(self) -> int:
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n


def _header(path: Path) -> tuple[dict, int]:
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise TruncatedCheckpointError(f"{path.name}: file is truncated (no header)")
        (n,) = struct.unpack("<Q", raw)
        if 8 + n > size:
            raise TruncatedCheckpointError(f"{path.name}: file is truncated (header cut short)")
        try:
            header = json.loads(f.read(n))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path.name}: not a safetensors file ({e})") from e
    return header, 8 + n


def weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (model_dir / n).is_file()]
        if missing:
            raise CheckpointError(f"{index.name} lists missing shards: {', '.join(missing)}")
        return [model_dir / n for n in names]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
            raise CheckpointError(
                f"{model_dir} holds only pickle checkpoints; export reads safetensors only "
                "(convert them with transformers' save_pretrained(safe_serialization=True))"
            )
        raise CheckpointError(f"{model_dir} has no *.safetensors weights")
    return files


def scan(model_dir: str | Path) -> dict[str, SourceTensor]:
    """Every tensor of the checkpoint, from the headers alone (a truncated shard is named)."""
    model_dir = Path(model_dir)
    out: dict[str, SourceTensor] = {}
    for path in weight_files(model_dir):
        header, base = _header(path)
        size = path.stat().st_size
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            if base + end > size:
                raise TruncatedCheckpointError(
                    f"{path.name}: file is truncated ({size} bytes; tensor {name!r} ends at "
                    f"{base + end}); download it again"
                )
            if info["dtype"] not in _DTYPES:
                raise CheckpointError(
                    f"{path.name}: tensor {name!r} has dtype {info['dtype']}; "
                    f"export reads {', '.join(_DTYPES)}"
                )
            out[name] = SourceTensor(
                name, path, info["dtype"], tuple(info["shape"]), base + start, end - start
            )
    return out


def read_rows(t: SourceTensor, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of ``t`` as float32 (shape [stop-start, *shape[1:]])."""
    np_dtype, width = _DTYPES[t.dtype]
    row_bytes = t.row_elems * width
    count = (stop - start) * t.row_elems
    with t.file.open("rb") as f:
        f.seek(t.offset + start * row_bytes)
        raw = np.fromfile(f, dtype=np.dtype(np_dtype), count=count)
    if raw.size != count:
        raise TruncatedCheckpointError(f"{t.file.name}: tensor {t.name!r} is cut short")
    if t.dtype == "BF16":
        arr = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        arr = raw.astype(np.float32, copy=False)
    shape = (stop - start, *t.shape[1:]) if t.shape else ()
    return arr.reshape(shape)


def read_all(t: SourceTensor) -> np.ndarray:
    return read_rows(t, 0, t.rows)


def row_chunks(
    t: SourceTensor, budget_bytes: int = 64 << 20, multiple: int = 1
) -> Iterator[tuple[int, int]]:
    """Row ranges whose float32 size stays under ``budget_bytes`` (a multiple of ``multiple``)."""
    per_row = max(1, t.row_elems * 4)
    step = max(multiple, (budget_bytes // per_row) // multiple * multiple)
    for start in range(0, t.rows, step):
        yield start, min(t.rows, start + step)


def parameter_count(model_dir: str | Path) -> int:
    """How many numbers the checkpoint holds (from the safetensors headers alone)."""
    total = 0
    for t in scan(model_dir).values():
        n = 1
        for d in t.shape:
            n *= d
        total += n
    return total
