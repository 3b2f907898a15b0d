"""Which runtime and engine configuration an installed artifact runs with.

A pulled artifact's engine is in its model package. An imported or synthesized one is
registered with one of famous's generic engines (``packages/_generic``: ``native-cpu``,
``transformers-cpu``, …); as a last resort its format names the runtime. The gateway
launches by this, and ``famous get/set --model`` scope to it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from famous.manifests.errors import ManifestError, PackageNotFound
from famous.manifests.loader import find_package

FORMAT_RUNTIMES = {
    "gguf": "llamacpp",
    "safetensors": "famous-native",
    "mlx": "mlx",
    "openvino": "openvino",
    "pte": "executorch",
    "tflite": "litert",
}
GENERIC_ENGINES = Path(__file__).resolve().parent.parent / "packages" / "_generic"


@functools.cache
def generic_engine(name: str) -> tuple[str, dict[str, Any]] | None:
    """(runtime, configuration) of famous's generic engine ``name``, or None."""
    import yaml

    for file in sorted(GENERIC_ENGINES.glob("*.yaml")):
        engine = (yaml.safe_load(file.read_text()) or {}).get("engine") or {}
        if engine.get("name") == name:
            return str(engine["runtime"]), dict(engine.get("configuration") or {})
    return None


def artifact_engine(model: str, engine: str, file_format: str) -> tuple[str, dict[str, Any]]:
    """(runtime, engine configuration) of ``model``'s artifact registered with ``engine``."""
    try:
        manifest = find_package(model).engines.get(engine)
    except (PackageNotFound, ManifestError):  # imported or synthesized: no package here
        manifest = None
    if manifest is not None:
        return manifest.runtime, dict(manifest.configuration)
    return generic_engine(engine) or (FORMAT_RUNTIMES.get(file_format, "llamacpp"), {})
