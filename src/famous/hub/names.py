"""What the user typed (package, repo id, hf.co URL, local path) and safe paths from Hub names.

Names from the Hub or the user never become paths without passing through here.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel

from famous.hub.errors import UnsafeName

_REPO = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?:@(?P<rev>[\w./-]+))?(?::(?P<q>[\w.-]+))?$"
)
_HUB_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/")


class ModelRef(BaseModel):
    """A parsed model reference."""

    kind: Literal["package", "repo", "path"]
    name: str  # package name, ORG/NAME, or a filesystem path
    variant: str | None = None  # from ORG/NAME:QUANT
    revision: str | None = None  # from ORG/NAME@REV


def parse_reference(text: str) -> ModelRef:
    """Classify ``text``: a local path wins, then hf.co/ORG/NAME[:QUANT], ORG/NAME, a package."""
    raw = text.strip()
    for prefix in _HUB_PREFIXES:
        if raw.lower().startswith(prefix):
            rest = raw[len(prefix) :].strip("/")
            match = _REPO.match(rest)
            if not match:
                raise ValueError(f"{text!r} is not a Hub model (hf.co/ORG/NAME[:QUANT])")
            return ModelRef(
                kind="repo", name=match["repo"], variant=match["q"], revision=match["rev"]
            )
    path = Path(raw).expanduser()
    looks_local = raw.startswith((".", "/", "~")) or path.is_file() or "/" in raw
    if looks_local and path.exists():
        return ModelRef(kind="path", name=str(path.resolve()))
    match = _REPO.match(raw)
    if "/" in raw and match:
        return ModelRef(kind="repo", name=match["repo"], variant=match["q"], revision=match["rev"])
    name, _, variant = raw.partition(":")
    return ModelRef(kind="package", name=name, variant=variant or None)


def safe_relpath(name: str) -> PurePosixPath:
    """A repo file name as a relative path that cannot leave its folder, or UnsafeName."""
    if not name or "\\" in name or "\0" in name or name.startswith("/") or ":" in name[:2]:
        raise UnsafeName(name)
    parts = PurePosixPath(name).parts
    if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 for p in parts for c in p):
        raise UnsafeName(name)
    if parts[0] == ".famous":
        raise UnsafeName(name)
    return PurePosixPath(*parts)


def safe_component(name: str, limit: int = 80) -> str:
    """One path component from any string: [A-Za-z0-9._-], never '.'/'..', short and unique."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"
    if clean != name or len(clean) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        clean = f"{clean[: limit - 9]}-{digest}"
    return clean


def repo_dirname(repo_id: str) -> str:
    """``ORG/NAME`` → ``ORG--NAME`` (sanitized), as the Hub cache does."""
    return safe_component(repo_id.replace("/", "--"))


def package_name_for_repo(repo_id: str) -> str:
    """A valid package name (lower case, [a-z0-9._-]) for a synthesized package."""
    name = re.sub(r"[^a-z0-9._-]+", "-", repo_id.lower().replace("/", "--")).strip("-._")
    return name or "model"
