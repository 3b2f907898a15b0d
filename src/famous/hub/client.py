"""The real ``huggingface_hub`` client, configured from the environment at call time.

``huggingface_hub`` reads HF_ENDPOINT / HF_HUB_OFFLINE once, at import; famous reads them
on every call so a mirror or offline mode set later (tests, ``--offline``) is honoured.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from famous.hub.errors import GatedRepo, HubError, RepoNotFound, UnexpectedAnswer

if TYPE_CHECKING:
    from huggingface_hub import HfApi

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """HF_TOKEN, else the token saved by ``hf auth login``; None when there is none."""
    value = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if value:
        return value
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # a broken token file must not break pulls of public repos
        return None


def offline(flag: bool | None = None) -> bool:
    if flag:
        return True
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("FAMOUS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def api(tok: str | None = None) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=tok if tok is not None else token())


class RemoteFile(BaseModel):
    """One file of a repo at a revision, with what the Hub says its bytes hash to."""

    path: str
    size: int
    blob_id: str | None = Field(default=None, description="git oid (sha1 of the git blob)")
    sha256: str | None = Field(default=None, description="LFS sha256; None for plain git files")

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


class RepoListing(BaseModel):
    """A repo's files at one commit: what a pull resolves its glob patterns against."""

    repo_id: str
    revision: str
    files: list[RemoteFile]
    gated: bool = False
    tags: list[str] = Field(default_factory=list)
    library_name: str | None = None

    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def get(self, path: str) -> RemoteFile | None:
        return next((f for f in self.files if f.path == path), None)


def is_connection_error(exc: BaseException) -> bool:
    """httpx / httpx2 connect, timeout and protocol errors: the Hub could not be reached."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(
        names
        & {"ConnectError", "TimeoutException", "NetworkError", "RemoteProtocolError", "ProxyError"}
    )


def describe_body(text: str) -> str:
    """A short, printable account of what a server sent instead of JSON."""
    text = text.strip()
    if not text:
        return "an empty body"
    snippet = text[:60] + ("…" if len(text) > 60 else "")
    return f"text that is not JSON ({snippet!r})"


def unexpected_answer(exc: BaseException, what: str) -> UnexpectedAnswer | None:
    """A body that does not parse as JSON: the endpoint is not (or not only) a Hub."""
    import json

    if isinstance(exc, json.JSONDecodeError):
        return UnexpectedAnswer(endpoint(), what, describe_body(exc.doc))
    return None


def translate(exc: BaseException, repo_id: str) -> HubError | None:
    """Map a huggingface_hub / httpx error to a famous error that says what to do."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if (odd := unexpected_answer(exc, f"request for the files of {repo_id}")) is not None:
        return odd
    if isinstance(exc, GatedRepoError):
        return GatedRepo(repo_id, endpoint())
    if isinstance(exc, RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        if status == 401 and token():
            return GatedRepo(repo_id, endpoint())
        return RepoNotFound(repo_id, similar_repos(repo_id))
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            return GatedRepo(repo_id, endpoint())
        return HubError(
            f"the Hub answered {status} for {repo_id}: {exc}".split("\n")[0],
            "try again in a moment; check HF_ENDPOINT if you use a mirror",
        )
    if is_connection_error(exc):
        return HubError(
            f"cannot reach the Hub at {endpoint()}: {type(exc).__name__}: {exc}",
            "check your connection (or HF_ENDPOINT); pass --offline to use what is installed",
        )
    return None


def similar_repos(repo_id: str, limit: int = 5) -> list[str]:
    """Repo ids whose names look like ``repo_id``'s, from a Hub search; [] when it fails."""
    import difflib
    import re

    name = repo_id.split("/")[-1]
    tokens = [t for t in re.split(r"[-_.]", name) if t]
    queries = [name, *["-".join(tokens[:k]) for k in range(len(tokens) - 1, 0, -1)][:3]]
    found: list[str] = []
    try:
        client = api()
        for query in queries:
            for info in client.list_models(search=query, limit=20):
                if info.id not in found and info.id.lower() != repo_id.lower():
                    found.append(info.id)
            if found:
                break
    except Exception:
        return []
    found.sort(key=lambda r: -difflib.SequenceMatcher(None, r.lower(), repo_id.lower()).ratio())
    return found[:limit]


def fetch_listing(repo_id: str, revision: str | None = None, tok: str | None = None) -> RepoListing:
    """The repo's files, sizes and hashes at ``revision`` (default: main) in one API call.

    The revision is always sent (``/api/models/REPO/revision/main``): some mirrors answer
    401 to the revision-less ``/api/models/REPO``, which reads as "no such repo".
    """
    try:
        info: Any = api(tok).model_info(
            repo_id, revision=revision or DEFAULT_REVISION, files_metadata=True
        )
    except Exception as exc:
        mapped = translate(exc, repo_id)
        if mapped is not None:
            raise mapped from exc
        raise
    files = []
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        files.append(
            RemoteFile(
                path=sibling.rfilename,
                size=sibling.size if sibling.size is not None else (lfs.size if lfs else -1),
                blob_id=sibling.blob_id,
                sha256=lfs.sha256 if lfs else None,
            )
        )
    if any(f.size < 0 for f in files):  # an endpoint without blob sizes: use the tree
        sizes = {}
        for entry in api(tok).list_repo_tree(repo_id, revision=info.sha, recursive=True):
            if hasattr(entry, "size"):
                sizes[entry.path] = (
                    entry.size,
                    entry.blob_id,
                    entry.lfs.sha256 if entry.lfs else None,
                )
        files = [
            RemoteFile(path=p, size=s, blob_id=b, sha256=h)
            for p, (s, b, h) in sorted(sizes.items())
        ]
    if not info.sha:
        raise HubError(f"{endpoint()} gave no commit sha for {repo_id}", "is HF_ENDPOINT a Hub?")
    return RepoListing(
        repo_id=info.id or repo_id,
        revision=info.sha,
        files=files,
        gated=bool(getattr(info, "gated", False)),
        tags=list(getattr(info, "tags", None) or []),
        library_name=getattr(info, "library_name", None),
    )
