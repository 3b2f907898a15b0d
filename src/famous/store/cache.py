"""``FAMOUS_HOME/cache``: answers famous can recompute (validated packages, a recent
detection). Writing one may fail (a read-only home); that only costs time, never an error."""

from __future__ import annotations

import os
from pathlib import Path

from famous.store.paths import famous_home


def cache_dir(*parts: str) -> Path:
    return famous_home().joinpath("cache", *parts)


def write_quietly(path: Path, text: str) -> bool:
    """Write ``text`` atomically (a temp file renamed over ``path``); False when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        return False
    return True
