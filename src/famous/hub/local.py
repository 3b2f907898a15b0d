"""Local model files for ``famous import``: check they are the model they claim to be before
anything is registered, and copy them under FAMOUS_HOME so that a copy killed halfway never
leaves a torn file registered (nor overwrites one that is).

Checks read only headers, with every length bounded by the file's size: a file of random
bytes or a hostile header fails in milliseconds, without large reads or allocations.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from famous.formats import gguf_meta
from famous.formats.projector import is_projector
from famous.hub.errors import BadModelFile
from famous.hub.formats import classify
from famous.store.artifacts import ArtifactFile
from famous.store.locks import held

CONFIG_LIMIT = 16 << 20  # a config.json bigger than this is not one
SAFETENSORS_HEADER_LIMIT = 100_000_000  # safetensors' own limit on its JSON header
PARTIAL_DIR = Path(".famous") / "partial"  # where copies grow, as downloads do


def check_gguf(path: Path) -> dict[str, object]:
    """The metadata of a whole, well-formed GGUF file, or BadModelFile saying what is wrong."""
    try:
        return gguf_meta.check_file(path)
    except gguf_meta.GGUFError as exc:
        problem = str(exc).removeprefix(f"{path}: ").removeprefix(str(path) + " ")
        raise BadModelFile(path, problem) from None


def check_safetensors(path: Path) -> None:
    """A safetensors file: a JSON header of a sane length, every tensor inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length > min(size - 8, SAFETENSORS_HEADER_LIMIT):
            raise BadModelFile(path, "is not a safetensors file (no valid header length)")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise BadModelFile(path, "is not a safetensors file (its header is not a JSON object)")
    data = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data
        ):
            raise BadModelFile(
                path, f"tensor {name!r} lies outside the file's {data} data bytes (truncated?)"
            )


def check_config(path: Path) -> None:
    if not path.is_file():
        raise BadModelFile(path.parent, "has no config.json beside its weights")
    if path.stat().st_size > CONFIG_LIMIT:
        raise BadModelFile(path, f"is over {CONFIG_LIMIT >> 20} MiB: not a model config")
    try:
        value = json.loads(path.read_bytes())
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BadModelFile(path, "is not a JSON object")


def check_source(src: Path, relpaths: list[str]) -> None:
    """Refuse what cannot be a model before a package is made for it: a single file that is
    not a sound GGUF file, a folder with neither GGUF weights nor config.json + weights."""
    if src.is_file():
        if not src.name.lower().endswith(".gguf"):
            raise BadModelFile(src, "is not a .gguf file (import other formats as a model folder)")
        check_gguf(src)
        return
    kinds = classify(relpaths)
    if any(not is_projector(p) for p in kinds.get("gguf", [])):
        return
    if not kinds:
        raise BadModelFile(
            src, "holds no model weights (.safetensors with config.json, or .gguf files)"
        )
    check_config(src / "config.json")


def check_files(root: Path, relpaths: list[str]) -> None:
    """Every file about to be registered: GGUF and safetensors headers, nothing empty."""
    for rel in relpaths:
        path = root / rel
        low = rel.lower()
        if low.endswith(".gguf"):
            check_gguf(path)
        elif low.endswith(".safetensors"):
            check_safetensors(path)
        elif path.stat().st_size == 0:
            raise BadModelFile(path, "is empty")
        if rel == "config.json":
            check_config(path)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def copy_file(src: Path, dest: Path, relpath: str, size: int) -> ArtifactFile:
    """Copy ``src`` to ``dest/relpath`` atomically: the bytes grow under a temporary name in
    ``dest/.famous/partial``, are fsynced, then renamed into place. Hashes while copying;
    refuses a source whose size changed since it was checked."""
    from famous.hub.names import safe_component, safe_relpath

    target = dest / safe_relpath(relpath)
    part = dest / PARTIAL_DIR / f"{safe_component(relpath, 64)}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    copied = 0
    with open(src, "rb") as fin, open(part, "wb") as fout:
        while chunk := fin.read(8 << 20):
            digest.update(chunk)
            fout.write(chunk)
            copied += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    if copied != size:
        part.unlink(missing_ok=True)
        raise BadModelFile(src, f"changed while it was copied ({size} bytes, then {copied})")
    os.replace(part, target)
    fsync_dir(target.parent)
    return ArtifactFile(
        relpath=relpath,
        size_bytes=copied,
        sha256=digest.hexdigest(),
        mtime_ns=target.stat().st_mtime_ns,
    )


def finish_copies(dest: Path) -> None:
    """Drop the empty temporary folders once every file is in place."""
    for folder in (dest / PARTIAL_DIR, dest / PARTIAL_DIR.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()
    fsync_dir(dest)


@contextlib.contextmanager
def staging_folder(base: Path, name: str) -> Iterator[Path]:
    """A new, empty folder ``base/name`` (or ``name-2``, …) that no artifact uses yet, held
    under the folder lock ``famous prune`` honours, and deleted if the block fails.

    A re-import copies into a new folder, so the registered one is never written to; until
    the catalog points at the new folder, it is an unfinished import for du and prune.
    """
    base.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = base / (name if n == 1 else f"{name}-{n}")
        if folder.exists():
            continue
        with held(str(folder)):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            try:
                yield folder
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            return
