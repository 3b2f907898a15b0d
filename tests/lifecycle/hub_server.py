"""A small HTTP server on 127.0.0.1 that speaks the parts of the Hugging Face Hub protocol
the real ``huggingface_hub`` client uses, with fault injection.

Why: tests must exercise the real client end to end (HF_ENDPOINT), never a mock of it.

Served:
- ``GET /api/models?search=&limit=``                       search
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}[?blobs=true]``
                                                            ``sha`` + ``siblings`` (+ LFS metadata)
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=``  tree listing
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``                 small files directly; LFS files by a
  302 to ``/cdn/{sha256}`` like the Hub; headers ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length``; ``Range`` honoured (206).

Faults (``server.faults``, cleared with ``server.faults.clear()``): a connection cut after N
bytes of a file, a server that ignores ``Range``, wrong bytes (checksum mismatch), 404 for a
file, a gated repo answering 401 without the right token, a stall before the body (timeout).

Mirror behaviours (also ``server.faults``), as seen on Hub mirrors that are not the Hub:
``require_revision`` (401 for ``/api/models/{repo}`` without ``/revision/{rev}``),
``api_body`` (every ``/api/`` route answers 200 with these bytes: empty, HTML, bad JSON),
and ``ignore_range`` above. ``server.sent`` records how many body bytes each GET really got
onto the wire, so a test can tell a client that stopped reading from one that did not.

Use as a pytest fixture (``hub_server``) or as a context manager; ``python hub_server.py DIR``
serves repos laid out as ``DIR/ORG/NAME/...`` (used by the benchmark, in its own process).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".tflite", ".pte", ".npz")
LFS_THRESHOLD = 10 * 1024 * 1024
_SLICE = 256 << 10  # bodies go out in slices of this, so a client's early close is visible


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as ``oid`` for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    source: bytes | Path
    size: int
    sha256: str
    blob_id: str
    lfs: bool

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        end = self.size if end is None else end
        if isinstance(self.source, bytes):
            return self.source[start:end]
        with open(self.source, "rb") as f:
            f.seek(start)
            return f.read(end - start)


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    sha: str
    gated: bool = False
    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    downloads: int = 0
    likes: int = 0


@dataclass
class Sent:
    """A body on its way out: counted as each slice is written, so it is current while the
    handler still runs (a client may be done before the handler returns)."""

    path: str
    range: str | None
    bytes: int = 0


@dataclass
class Faults:
    """What goes wrong. Each entry names a repo-relative file path (or ``*`` for every file)."""

    cut_after: dict[str, int] = field(default_factory=dict)  # close the socket after N bytes
    cut_times: int = 1_000_000  # how many cuts before the fault heals itself
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    corrupt: set[str] = field(default_factory=set)  # flip a byte: checksum mismatch
    missing: set[str] = field(default_factory=set)  # resolve answers 404 EntryNotFound
    stall: dict[str, float] = field(default_factory=dict)  # sleep this long before the body
    stall_api: float = 0.0  # sleep before answering API calls
    rate: dict[str, int] = field(default_factory=dict)  # throttle to N bytes per second
    require_revision: bool = False  # 401 for repo info asked without an explicit revision
    api_body: bytes | None = None  # every API route answers 200 with exactly these bytes

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def lookup(self, table: dict[str, object] | set[str], path: str) -> bool:
        return path in table or "*" in table


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class HubServer:
    """Serve in-memory or on-disk repos on 127.0.0.1, a free port."""

    def __init__(self, token: str = "hf_test_token") -> None:
        self.repos: dict[str, HubRepo] = {}
        self.faults = Faults()
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        self.sent: list[Sent] = []  # each GET's body bytes written so far
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- repos -------------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | Path],
        *,
        gated: bool = False,
        tags: list[str] | None = None,
        library_name: str | None = None,
        downloads: int = 0,
        likes: int = 0,
    ) -> HubRepo:
        entries: dict[str, HubFile] = {}
        for path, source in files.items():
            if isinstance(source, bytes):
                size, sha, blob = len(source), _sha256(source), None
            else:
                size, sha, blob = source.stat().st_size, _file_sha256(source), None
            lfs = path.endswith(LFS_SUFFIXES) or size >= LFS_THRESHOLD
            if blob is None:
                # LFS files' git oid is the pointer file's; any stable hex id will do here.
                blob = (
                    git_blob_id(source)
                    if isinstance(source, bytes) and not lfs
                    else (hashlib.sha1(f"lfs {sha}".encode()).hexdigest())
                )
            entries[path] = HubFile(path, source, size, sha, blob, lfs)
        commit = hashlib.sha1(
            json.dumps(sorted((p, f.sha256) for p, f in entries.items())).encode()
            + repo_id.encode()
        ).hexdigest()
        repo = HubRepo(
            repo_id, entries, commit, gated, list(tags or []), library_name, downloads, likes
        )
        self.repos[repo_id] = repo
        return repo

    def add_directory(self, repo_id: str, root: Path, **kwargs: object) -> HubRepo:
        files: dict[str, bytes | Path] = {
            p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()
        }
        return self.add_repo(repo_id, files, **kwargs)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        handler = type("BoundHubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, method: str, path: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, range_header))

    def start_sending(self, path: str, range_header: str | None) -> Sent:
        record = Sent(path, range_header)
        with self._lock:
            self.sent.append(record)
        return record

    def bytes_sent(self, sha256: str) -> list[tuple[str | None, int]]:
        """(Range, bytes written) of each GET of the blob ``sha256`` from the CDN route."""
        return [(s.range, s.bytes) for s in self.sent if s.path.startswith(f"/cdn/{sha256}")]

    def downloads_of(self, filename: str) -> list[tuple[str, str, str | None]]:
        """GET requests that fetched the bytes of ``filename`` (resolve or CDN)."""
        shas = {f.sha256 for r in self.repos.values() for p, f in r.files.items() if p == filename}
        out = []
        for method, path, rng in self.requests:
            if method != "GET":
                continue
            if (path.endswith("/" + filename) and "/resolve/" in path) or (
                path.startswith("/cdn/") and path.split("/")[2].split("?")[0] in shas
            ):
                out.append((method, path, rng))
        return out


_RESOLVE = re.compile(r"^/(?:models/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API_REPO = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+?)"
    r"(?:/revision/(?P<rev>[^/]+)|/tree/(?P<tree>[^/]+)(?P<sub>/.*)?)?/?$"
)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- helpers -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(headers or {})}
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json(status, {"error": message}, headers)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    # -- dispatch ----------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query)
        self.hub.log(self.command, path, self.headers.get("Range"))
        try:
            if path.startswith("/api/") and self.hub.faults.api_body is not None:
                body = self.hub.faults.api_body
                return self._send(200, body, {"Content-Type": "text/html; charset=utf-8"})
            if path == "/api/models":
                return self._search(query)
            if match := _API_REPO.match(path):
                return self._api_repo(match, query)
            if path.startswith("/cdn/"):
                return self._cdn(path)
            if match := _RESOLVE.match(path):
                return self._resolve(match)
            self._error(404, "NotFound", f"no route {path}")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _repo_or_404(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    def _search(self, query: dict[str, list[str]]) -> None:
        needle = query.get("search", [""])[0].lower()
        limit = int(query.get("limit", ["1000"])[0])
        filters = set(query.get("filter", []))
        hits = [
            r
            for r in self.hub.repos.values()
            if needle in r.repo_id.lower() and filters <= set(r.tags)
        ]
        hits.sort(key=lambda r: -r.downloads)
        self._json(200, [self._summary(r, siblings=True) for r in hits[:limit]])

    def _summary(self, repo: HubRepo, siblings: bool, blobs: bool = False) -> dict[str, object]:
        data: dict[str, object] = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "tags": repo.tags,
            "library_name": repo.library_name,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
        }
        if siblings:
            sib = []
            for f in repo.files.values():
                entry: dict[str, object] = {"rfilename": f.path}
                if blobs:
                    entry["size"] = f.size
                    entry["blobId"] = f.blob_id
                    if f.lfs:
                        entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
                sib.append(entry)
            data["siblings"] = sib
        return data

    def _api_repo(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        if self.hub.faults.stall_api:
            time.sleep(self.hub.faults.stall_api)
        if self.hub.faults.require_revision and not (match["rev"] or match["tree"]):
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        repo = self._repo_or_404(match["repo"])
        if repo is None:
            return
        rev = match["rev"] or match["tree"] or "main"
        if rev not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if match["tree"] is None:
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            return self._json(200, self._summary(repo, siblings=True, blobs=blobs))
        sub = (match["sub"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries: list[dict[str, object]] = []
        folders: set[str] = set()
        for f in repo.files.values():
            if sub and not f.path.startswith(sub + "/"):
                continue
            rest = f.path[len(sub) + 1 :] if sub else f.path
            if "/" in rest and not recursive:
                folders.add((sub + "/" if sub else "") + rest.split("/")[0])
                continue
            parts = f.path.split("/")
            for i in range(len(sub.split("/")) if sub else 0, len(parts) - 1):
                folders.add("/".join(parts[: i + 1]))
            entry: dict[str, object] = {
                "type": "file",
                "oid": f.blob_id,
                "size": f.size,
                "path": f.path,
            }
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        dirs = [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": p} for p in sorted(folders)
        ]
        self._json(200, dirs + entries)

    def _file_headers(self, repo: HubRepo, f: HubFile) -> dict[str, str]:
        return {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{f.sha256 if f.lfs else f.blob_id}"',
            "Accept-Ranges": "bytes",
        }

    def _resolve(self, match: re.Match[str]) -> None:
        repo = self._repo_or_404(match["repo"])
        if repo is None:
            return
        if repo.gated and not self._authorized():
            return self._error(
                401, "GatedRepo", "Access to this repo is restricted; you must be authenticated."
            )
        if match["rev"] not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
        name = match["file"]
        f = repo.files.get(name)
        if f is None or self.hub.faults.lookup(self.hub.faults.missing, name):
            return self._error(404, "EntryNotFound", f"{name} does not exist", commit=repo.sha)
        headers = self._file_headers(repo, f)
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
            headers["Location"] = f"/cdn/{f.sha256}?repo={urllib.parse.quote(repo.repo_id)}"
            return self._send(302, b"", headers)
        self._body(repo, f, headers)

    def _cdn(self, path: str) -> None:
        sha = path.split("/")[2]
        for repo in self.hub.repos.values():
            for f in repo.files.values():
                if f.sha256 == sha and f.lfs:
                    return self._body(repo, f, self._file_headers(repo, f))
        self._error(404, "NotFound", "no such blob")

    def _body(self, repo: HubRepo, f: HubFile, headers: dict[str, str]) -> None:
        faults = self.hub.faults
        start, end, status = 0, f.size, 200
        rng = self.headers.get("Range")
        if rng and not faults.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, f.size) if m.group(2) else f.size
                if start >= f.size:
                    headers["Content-Range"] = f"bytes */{f.size}"
                    return self._send(416, b"", headers)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        stall = faults.stall.get(f.path, faults.stall.get("*", 0.0))
        if stall:
            time.sleep(stall)
        limit = end
        cut = None
        if faults.lookup(faults.cut_after, f.path) and faults.cut_times > 0:
            cut = faults.cut_after.get(f.path, faults.cut_after.get("*", 0))
            if start < cut < end:
                limit = cut
                faults.cut_times -= 1
            else:
                cut = None
        sent = self.hub.start_sending(self.path.split("?")[0], self.headers.get("Range"))
        if faults.lookup(faults.corrupt, f.path):
            data = bytearray(f.read(start, limit))
            if data:
                data[len(data) // 2] ^= 0xFF
            self.wfile.write(bytes(data))
            sent.bytes = len(data)
        elif faults.lookup(faults.rate, f.path):
            per_second = faults.rate.get(f.path, faults.rate.get("*", 1 << 20))
            step = max(per_second // 20, 1)
            for pos in range(start, limit, step):
                chunk = f.read(pos, min(pos + step, limit))
                self.wfile.write(chunk)
                sent.bytes += len(chunk)
                time.sleep(0.05)
        elif isinstance(f.source, Path):  # in slices: ``sent`` is what really went out
            with open(f.source, "rb") as fh:
                for pos in range(start, limit, _SLICE):
                    sent.bytes += self.connection.sendfile(fh, pos, min(_SLICE, limit - pos))
        else:
            for pos in range(start, limit, _SLICE):
                self.wfile.write(memoryview(f.source)[pos : min(pos + _SLICE, limit)])
                sent.bytes = min(pos + _SLICE, limit) - start
        if cut is not None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


def environment(server: HubServer) -> dict[str, str]:
    """Environment variables pointing the real client at ``server``, plain HTTP, no cache."""
    return {
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_OFFLINE": "0",
    }


try:  # a pytest fixture when pytest is present
    import pytest

    @pytest.fixture
    def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
        """A started HubServer; HF_ENDPOINT and friends point at it for the test."""
        server = HubServer().start()
        for key, value in environment(server).items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        try:
            yield server
        finally:
            server.stop()

except ImportError:  # pragma: no cover
    pass


def _serve_forever(root: Path) -> None:
    """Serve every ``root/ORG/NAME`` directory as a repo; print the URL, run until killed."""
    server = HubServer()
    for org in sorted(p for p in root.iterdir() if p.is_dir()):
        for repo in sorted(p for p in org.iterdir() if p.is_dir()):
            server.add_directory(f"{org.name}/{repo.name}", repo)
    server.start()
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    _serve_forever(Path(sys.argv[1]))
    os._exit(0)
