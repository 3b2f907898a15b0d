"""Read back what a GGUF holds (tensor types, metadata) with ``gguf.GGUFReader``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tensor_types(path: str | Path) -> dict[str, str]:
    """Tensor name → GGML type name (``Q8_0``, ``F16`` …)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in reader.tensors}


def metadata(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Scalar and string metadata (arrays other than strings are summarized by length)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out: dict[str, Any] = {}
    for name, f in reader.fields.items():
        if keys is not None and name not in keys:
            continue
        if name.startswith("GGUF."):
            continue
        try:
            value = f.contents()
        except Exception:  # pragma: no cover - exotic field types
            continue
        if isinstance(value, list) and len(value) > 16:
            value = f"<{len(value)} items>"
        out[name] = value
    return out
