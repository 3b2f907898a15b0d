"""What the user typed (package, repo id, hf.co URL, local path) and safe paths from Hub names.

Names from the Hub or the user never become paths without passing through here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel

from famous.hub.errors import BadReference, UnsafeName

# One half of ORG/NAME as the Hub allows it: ASCII letters, digits, '_', '-', '.', starting
# and ending with a letter, digit or '_' (so never '.', '..' or a trailing '-').
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO = re.compile(
    rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[A-Za-z0-9_./-]+))?(?::(?P<q>[A-Za-z0-9_.-]+))?$"
)
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_VARIANT = re.compile(r"^[A-Za-z0-9_.-]+$")
_HUB_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/")


class ModelRef(BaseModel):
    """A parsed model reference."""

    kind: Literal["package", "repo", "path"]
    name: str  # package name, ORG/NAME, or a filesystem path
    variant: str | None = None  # from ORG/NAME:QUANT
    revision: str | None = None  # from ORG/NAME@REV


def check_text(text: str, what: str = "name") -> str:
    """``text`` unless it holds control characters (NUL, newline, escape…) or is empty: such
    a name cannot be typed back, printed safely, or become a file name."""
    if not text.strip():
        raise BadReference(text, f"is not a {what}: it is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadReference(text, f"is not a {what}: it holds control characters")
    return text


def _repo_ref(text: str, match: re.Match[str]) -> ModelRef:
    """A repo reference, once the id and revision pass the Hub's own rules."""
    repo, rev = match["repo"], match["rev"]
    if "--" in repo or ".." in repo or repo.lower().endswith(".git"):
        raise BadReference(
            text, "is not a Hub repo id: '--', '..' and a '.git' end are not allowed"
        )
    if rev is not None and any(p in ("", ".", "..") for p in rev.split("/")):
        raise BadReference(
            text, f"names the revision {rev!r}, which is not a branch, tag or commit"
        )
    return ModelRef(kind="repo", name=repo, variant=match["q"], revision=rev)


def _is(check: Callable[[], bool]) -> bool:
    """A path check that a name the system cannot look up (too long, say) answers False."""
    try:
        return check()
    except (OSError, ValueError):
        return False


def parse_reference(text: str) -> ModelRef:
    """Classify ``text``: a local path wins, then hf.co/ORG/NAME[:QUANT], ORG/NAME, a package.

    Anything else (``a/..``, ``../x`` that does not exist, control characters) is refused
    with BadReference before anything is read or written.
    """
    raw = check_text(text, "model name").strip()
    for prefix in _HUB_PREFIXES:
        if raw.lower().startswith(prefix):
            match = _REPO.match(raw[len(prefix) :].strip("/"))
            if not match:
                raise BadReference(text, "is not a Hub model (hf.co/ORG/NAME[:QUANT])")
            return _repo_ref(text, match)
    path = Path(raw).expanduser()
    looks_local = raw.startswith((".", "/", "~")) or "/" in raw or "\\" in raw or _is(path.is_file)
    if looks_local and _is(path.exists):
        return ModelRef(kind="path", name=str(path.resolve()))
    if match := _REPO.match(raw):
        return _repo_ref(text, match)
    if looks_local:
        raise BadReference(
            text,
            "is neither an existing path nor a Hub repo id (ORG/NAME: letters, digits, '_', "
            "'-', '.', not starting or ending with '.' or '-')",
        )
    name, _, variant = raw.partition(":")
    if not _PACKAGE.match(name) or (variant and not _VARIANT.match(variant)):
        raise BadReference(text, "is not a package name (letters, digits, '.', '_', '-')")
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
