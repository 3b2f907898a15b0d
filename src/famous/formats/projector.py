"""Vision projectors (``mmproj-*.gguf``): the image encoder a llama.cpp model reads images with.

A GGUF repo that can see ships its projector beside the weights, often in several
precisions. One is enough, and every variant of the model shares it: famous takes an f16
one (the precision llama.cpp's converters write and its CPU and GPU backends run fast),
else bf16, else the smallest, so a quantized text model never drags an f32 encoder along.
The Hub side (which file to pull) and the runtime side (which file to pass with
``--mmproj``) use the same rule, so the launch finds the file the pull chose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_PRECISION = re.compile(r"(?i)(?<![a-z0-9])(b?f16)(?![a-z0-9])")


def is_projector(path: str) -> bool:
    """A file named like a multimodal projector (``mmproj`` in its name, ``.gguf``)."""
    name = path.rsplit("/", 1)[-1].lower()
    return "mmproj" in name and name.endswith(".gguf")


def _rank(path: str, size: int) -> tuple[int, int, str]:
    found = _PRECISION.search(path.rsplit("/", 1)[-1])
    precision = found.group(1).lower() if found else ""
    return ({"f16": 0, "bf16": 1}.get(precision, 2), size, path)


def choose_projector(sizes: Mapping[str, int]) -> str | None:
    """The projector to use among ``sizes`` (path → bytes): f16, then bf16, then the smallest;
    None when there is none."""
    found = [p for p in sizes if is_projector(p)]
    if not found:
        return None
    return min(found, key=lambda p: _rank(p, sizes[p]))


def projector_beside(model: Path) -> Path | None:
    """The projector in the folder of the GGUF file ``model``, chosen as a pull chooses it."""
    if not model.is_file():
        return None
    try:
        sizes = {
            p.name: p.stat().st_size
            for p in model.parent.iterdir()
            if p.is_file() and p != model and is_projector(p.name)
        }
    except OSError:
        return None
    chosen = choose_projector(sizes)
    return model.parent / chosen if chosen else None
