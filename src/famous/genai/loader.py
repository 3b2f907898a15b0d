"""Checkpoint loading by declarative weight remapping.

A family's ``WeightMap`` is a list of ``Rule(target ← sources, transform)``. Loading:

1. read every safetensors header (a truncated shard is named before anything is read);
2. account for every tensor without reading data: a source the map needs but the
   checkpoint lacks, a checkpoint tensor no rule uses, a model parameter no rule fills,
   a shape that disagrees with ``config.json`` — each is an error that names the tensor;
3. build the model on the meta device (no memory), then read each tensor from its shard
   straight into memory of its own and assign each finished target, so peak memory is
   about the model plus the tensors one rule is fusing, never a second copy and no
   memory map left behind.

Pickle checkpoints (``.bin`` / ``.pt``) execute code when loaded; they are refused unless the
caller passes ``allow_pickle=True`` (then read with ``weights_only=True``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from famous.genai.errors import (
    CheckpointError,
    PickleCheckpointRefused,
    ShapeMismatchError,
    TruncatedCheckpointError,
    WeightMapError,
)
from famous.genai.gguf_source.checkpoint import GGUFCheckpoint
from famous.genai.gguf_source.reader import is_gguf
from famous.genai.hf_config import read_config_json
from famous.genai.models import family_for, load_config
from famous.genai.weight_map import Rule, Shape, WeightMap

if TYPE_CHECKING:
    import torch

    from famous.genai.config import ModelConfig
    from famous.genai.layers.transformer import DecoderModel

# ------------------------------------------------------------------------------ checkpoint files


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: Shape
    dtype: str
    offset: int = 0  # safetensors: where the data starts in the file, and its length
    nbytes: int = 0


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse a safetensors header and check the file holds every byte it promises; returns
    the header and where the tensor data starts."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise TruncatedCheckpointError(
                    f"{path.name}: file is truncated ({size} bytes, no header)"
                )
            (n,) = struct.unpack("<Q", raw)
            if 8 + n > size:
                raise TruncatedCheckpointError(
                    f"{path.name}: file is truncated "
                    f"(header needs {8 + n} bytes, file has {size}); "
                    "download it again"
                )
            header = json.loads(f.read(n))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path.name}: not a safetensors file (bad header: {e})") from e
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise TruncatedCheckpointError(
            f"{path.name}: file is truncated: it should hold {8 + n + end} bytes but has {size}; "
            "the download was interrupted — download it again"
        )
    return header, 8 + n


def checkpoint_files(model_dir: str | Path, allow_pickle: bool = False) -> tuple[list[Path], bool]:
    """The weight files of a model directory and whether they are pickle."""
    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        with index.open(encoding="utf-8") as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        missing = [n for n in names if not (d / n).is_file()]
        if missing:
            raise CheckpointError(
                f"{index.name} lists shards that are missing: {', '.join(missing)}"
            )
        return [d / n for n in names], False
    st = sorted(d.glob("*.safetensors"))
    if st:
        return st, False
    pickles = sorted([*d.glob("*.bin"), *d.glob("*.pt"), *d.glob("*.pth")])
    if pickles:
        if not allow_pickle:
            raise PickleCheckpointRefused(
                f"{d} holds only pickle checkpoints ({', '.join(p.name for p in pickles)}); "
                "pickle files can run code when loaded, so famous refuses them by default. "
                "Use a safetensors revision of the model, or opt in with allow_pickle=True "
                "(--allow-pickle) if you trust the source."
            )
        return pickles, True
    raise CheckpointError(f"{d} has no weights (*.safetensors, or pickle *.bin / *.pt)")


def scan_checkpoint(files: Sequence[Path], pickle: bool = False) -> dict[str, TensorInfo]:
    infos: dict[str, TensorInfo] = {}
    for path in files:
        if pickle:
            import torch

            sd = torch.load(path, map_location="meta", weights_only=True, mmap=True)
            for k, t in sd.items():
                infos[k] = TensorInfo(path, tuple(t.shape), str(t.dtype))
            continue
        header, base = _read_header(path)
        for k, v in header.items():
            if k == "__metadata__":
                continue
            start, end = v["data_offsets"]
            infos[k] = TensorInfo(path, tuple(v["shape"]), v["dtype"], base + start, end - start)
    return infos


# ------------------------------------------------------------------------------ accounting


def check_weight_map(
    wmap: WeightMap, infos: dict[str, TensorInfo], target_shapes: dict[str, Shape]
) -> None:
    """Every error a checkpoint can have, found from headers alone (nothing loaded yet)."""
    used: set[str] = set()
    missing: list[str] = []
    for rule in wmap.rules:
        for s in rule.sources:
            used.add(s)
            if s not in infos:
                missing.append(f"{s} (for {rule.target})")
    if missing:
        raise WeightMapError(
            f"checkpoint is missing {len(missing)} tensor(s) the model needs: "
            + ", ".join(missing[:8])
            + (" …" if len(missing) > 8 else "")
        )
    unused = sorted(k for k in infos if k not in used and not wmap.ignored(k))
    if unused:
        raise WeightMapError(
            f"checkpoint has {len(unused)} tensor(s) the weight map does not use: "
            + ", ".join(unused[:8])
            + (" …" if len(unused) > 8 else "")
            + " (does config.json match these weights?)"
        )
    targets = {r.target for r in wmap.rules}
    not_filled = sorted(t for t in target_shapes if t not in targets)
    if not_filled:
        raise WeightMapError(f"no rule fills model parameter(s): {', '.join(not_filled)}")
    unknown = sorted(t for t in targets if t not in target_shapes)
    if unknown:
        raise WeightMapError(f"weight map names parameter(s) the model lacks: {', '.join(unknown)}")
    _refuse_integer_weights(wmap, infos)
    for rule in wmap.rules:
        want = rule.transform.source_shapes(target_shapes[rule.target], len(rule.sources))
        for s, w in zip(rule.sources, want, strict=True):
            got = infos[s].shape
            if got != tuple(w):
                raise ShapeMismatchError(
                    f"tensor {s!r} has shape {list(got)} but config.json implies {list(w)} "
                    f"(for model parameter {rule.target!r}); the checkpoint and its config.json "
                    "do not belong together"
                )


_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def _refuse_integer_weights(wmap: WeightMap, infos: dict[str, TensorInfo]) -> None:
    """Every parameter famous fills is floating point: an integer or bool tensor there
    (packed quantized weights, a mislabelled export) would be cast to numbers that mean
    nothing, so it is refused with its name and dtype."""
    for rule in wmap.rules:
        for s in rule.sources:
            dtype = infos[s].dtype.removeprefix("torch.")
            if dtype == "gguf":
                continue  # a GGUF tensor is dequantized to floats as it is read
            if dtype.upper() not in _FLOAT_DTYPES and not dtype.startswith(("float", "bfloat")):
                raise CheckpointError(
                    f"{infos[s].file.name}: tensor {s!r} is {infos[s].dtype}, but model "
                    f"parameter {rule.target!r} is floating point; famous does not cast "
                    "integer tensors (is this a quantized checkpoint famous cannot read?)"
                )


# ------------------------------------------------------------------------------ loading


def _set_param(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    import torch

    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, torch.nn.Parameter(value, requires_grad=False))


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def _read_tensor(f: Any, info: TensorInfo) -> torch.Tensor:
    """Read one safetensors tensor straight into memory it owns: no memory map stays
    behind, so loading peaks at about the model's size, and a file changed later cannot
    change (or crash) the loaded model."""
    import torch

    name = _SAFETENSORS_DTYPES.get(info.dtype)
    if name is None:
        raise CheckpointError(f"{info.file.name}: unsupported tensor dtype {info.dtype}")
    t = torch.empty(info.shape, dtype=getattr(torch, name))
    if t.numel() * t.element_size() != info.nbytes:
        raise CheckpointError(
            f"{info.file.name}: a {info.dtype} tensor of shape {list(info.shape)} cannot "
            f"hold {info.nbytes} bytes"
        )
    buf = memoryview(t.reshape(-1).view(torch.uint8).numpy())
    f.seek(info.offset)
    done = 0
    while done < info.nbytes:  # one read() returns at most ~2 GiB
        n = f.readinto(buf[done:])
        if not n:
            raise TruncatedCheckpointError(
                f"{info.file.name}: file is truncated (tensor data ends early); download it again"
            )
        done += n
    return t


def _owned(value: torch.Tensor, sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """``value`` in memory of its own. A tensor taken from a memory-mapped pickle without
    conversion still points into the map: the model would keep the whole file mapped for as
    long as any one of its tensors lives, and would break if the file changed."""
    ptr = value.untyped_storage().data_ptr()
    if any(ptr == s.untyped_storage().data_ptr() for s in sources):
        return value.clone()
    return value


def load_state(
    model: torch.nn.Module,
    wmap: WeightMap,
    files: Sequence[Path],
    infos: dict[str, TensorInfo],
    dtype: torch.dtype,
    pickle: bool = False,
) -> None:
    """Fill ``model``'s (meta) parameters shard by shard."""
    import torch

    order = {p: i for i, p in enumerate(files)}
    by_file: dict[Path, list[Rule]] = {}
    runs_at: dict[str, Path] = {}  # source name → shard whose turn runs its rule
    for rule in wmap.rules:
        # a rule runs when the last shard it reads from is open
        last = max((infos[s].file for s in rule.sources), key=order.__getitem__)
        by_file.setdefault(last, []).append(rule)
        for s in rule.sources:
            runs_at[s] = last
    pending: dict[str, torch.Tensor] = {}  # read from an earlier shard, waiting for a later one
    for path in files:
        with path.open("rb", buffering=0) as f:
            if pickle:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                get = sd.__getitem__
            else:

                def get(name: str, f=f) -> torch.Tensor:
                    return _read_tensor(f, infos[name])

            for name, info in infos.items():
                if info.file == path and name in runs_at and runs_at[name] != path:
                    pending[name] = get(name)
            for rule in by_file.get(path, []):
                parts = [pending.pop(s) if s in pending else get(s) for s in rule.sources]
                value = rule.transform.apply(parts).to(dtype).contiguous()
                if pickle:
                    value = _owned(value, parts)
                del parts
                _set_param(model, rule.target, value)


def load_model(
    model_dir: str | Path,
    dtype: torch.dtype | str | None = None,
    max_seq_len: int = 4096,
    allow_pickle: bool = False,
    device: str = "cpu",
) -> DecoderModel:
    """Build the family's model from ``config.json`` and fill it from the checkpoint;
    ``model_dir`` may also be a GGUF file (config and weights rebuilt from it).

    ``dtype``: ``torch.float32`` / ``"bf16"`` / ``"fp16"`` …; default: float32.
    """
    import torch

    from famous.genai.layers.transformer import DecoderModel  # torch

    dtype = resolve_dtype(dtype)
    gguf = GGUFCheckpoint(model_dir) if is_gguf(model_dir) else None
    hf = gguf.hf_config if gguf else read_config_json(model_dir)
    family = family_for(hf)  # unknown model_type fails here, before any file is read
    cfg = family.config_from_hf(hf)
    with torch.device("meta"):
        model = DecoderModel(cfg, max_seq_len=max_seq_len)
    if gguf:
        load_gguf_into(model, family.weight_map(cfg), gguf, dtype)
    else:
        load_weights_into(model, family.weight_map(cfg), model_dir, dtype, allow_pickle)
    model.materialize_buffers(device)
    return model.eval()


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "f32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "f16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r} (use one of {sorted(table)})")
    return table[dtype]


def config_of(model_dir: str | Path) -> ModelConfig:
    if is_gguf(model_dir):
        hf = GGUFCheckpoint(model_dir).hf_config
        return family_for(hf).config_from_hf(hf)
    return load_config(model_dir)


def load_weights_into(
    model: torch.nn.Module,
    wmap: WeightMap,
    model_dir: str | Path,
    dtype: torch.dtype,
    allow_pickle: bool = False,
) -> None:
    """Check ``wmap`` against the checkpoint's headers, then fill ``model``'s (meta)
    parameters shard by shard: decoders and encoders load through this one sequence."""
    files, pickle = checkpoint_files(model_dir, allow_pickle)
    infos = scan_checkpoint(files, pickle)
    check_weight_map(wmap, infos, {n: tuple(p.shape) for n, p in model.named_parameters()})
    load_state(model, wmap, files, infos, dtype, pickle)


def load_gguf_into(
    model: torch.nn.Module, wmap: WeightMap, gguf: GGUFCheckpoint, dtype: torch.dtype
) -> None:
    """The same checks and rules as safetensors, fed by the GGUF's dequantized tensors (one
    rule's sources in memory at a time)."""
    infos = {n: TensorInfo(gguf.path, s, "gguf") for n, s in gguf.shapes.items()}
    check_weight_map(wmap, infos, {n: tuple(p.shape) for n, p in model.named_parameters()})
    for rule in wmap.rules:
        parts = [gguf.read(s) for s in rule.sources]
        value = rule.transform.apply(parts).to(dtype).contiguous()
        del parts
        _set_param(model, rule.target, value)
