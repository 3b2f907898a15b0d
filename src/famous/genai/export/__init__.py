"""Exporters: famous's GGUF writer (``famous.genai.export.gguf``).

Import-light: numpy / gguf / llama_cpp load inside the functions that use them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GGUF_TYPES", "export_gguf"]

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")


def export_gguf(*args: Any, **kwargs: Any) -> Any:
    """See ``famous.genai.export.gguf.export_gguf``."""
    from famous.genai.export.gguf import export_gguf as _export

    return _export(*args, **kwargs)
