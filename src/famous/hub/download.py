"""Verified, resumable downloads of exact repo files through huggingface_hub's HTTP client.

Why not ``hf_hub_download``: since huggingface_hub 2.x a partial file is private to one
process and deleted on failure, so a pull killed halfway starts over. famous keeps its own
``.famous/partial/<hash>.part`` per file (keyed by the expected content hash, so bytes of
another revision are never mixed in), resumes it with ``Range``, hashes while it downloads
(a second thread, so verification costs no extra pass), and moves a file into place only
after its size and sha256 (LFS) or git blob id (small files) match the Hub's listing.

Layout of a download folder::

    DEST/<repo file paths>            verified files only
    DEST/.famous/partial/<key>.part   unfinished bytes (resumable)
    DEST/.famous/verified.json        {path: size, sha256, blob id, mtime_ns} of verified files
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from pydantic import BaseModel

from famous.hub import client
from famous.hub.client import RemoteFile
from famous.hub.errors import (
    ChecksumMismatch,
    DownloadFailed,
    DownloadStopped,
    FileMissing,
    HubError,
    NotEnoughDisk,
    PullCancelled,
)
from famous.hub.names import safe_component, safe_relpath
from famous.hub.progress import NullProgress, ProgressSink

STATE_DIR = ".famous"
THREADED_HASH_MIN = 4 << 20  # hash bigger files on a second thread, overlapped with the network


class VerifiedFile(BaseModel):
    relpath: str
    size: int
    sha256: str | None
    blob_id: str | None
    mtime_ns: int


class _Retry(Exception):
    """A transient failure: the next attempt resumes from the partial file."""


class _Digest:
    """sha256 (LFS) or git blob sha1 of a stream, optionally computed on its own thread."""

    def __init__(self, git_size: int | None, threaded: bool) -> None:
        self._h = (
            hashlib.sha1(b"blob %d\0" % git_size) if git_size is not None else hashlib.sha256()
        )
        self._queue: queue.SimpleQueue[bytes | Path | None] | None = None
        self._thread: threading.Thread | None = None
        self._prefix: tuple[Path, int] | None = None
        if threaded:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        work = self._queue  # ``abandon`` drops the attribute while this thread still drains
        assert work is not None
        while (item := work.get()) is not None:
            if isinstance(item, Path):
                self._hash_file_prefix(item)
            else:
                self._h.update(item)

    def _hash_file_prefix(self, path: Path) -> None:
        assert self._prefix is not None
        left = self._prefix[1]
        with open(path, "rb") as f:
            while left > 0 and (chunk := f.read(min(left, 8 << 20))):
                self._h.update(chunk)
                left -= len(chunk)

    def prefix(self, path: Path, n: int) -> None:
        """Hash the first ``n`` bytes already on disk (a resumed download)."""
        self._prefix = (path, n)
        if self._queue is not None:
            self._queue.put(path)
        else:
            self._hash_file_prefix(path)

    def feed(self, chunk: bytes) -> None:
        if self._queue is not None:
            self._queue.put(chunk)
        else:
            self._h.update(chunk)

    def hexdigest(self) -> str:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        return self._h.hexdigest()

    def abandon(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


def _http_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError,)


def download_timeout() -> float:
    value = os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT")
    try:
        return float(value) if value else 10.0
    except ValueError:
        return 10.0


def free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


class _State:
    """``verified.json``: files already verified in this folder (written atomically)."""

    def __init__(self, dest: Path) -> None:
        self.path = dest / STATE_DIR / "verified.json"
        self._lock = threading.Lock()
        try:
            raw = json.loads(self.path.read_text())
            self.files: dict[str, dict[str, object]] = raw if isinstance(raw, dict) else {}
        except (OSError, ValueError):
            self.files = {}

    def valid(self, dest: Path, f: RemoteFile) -> VerifiedFile | None:
        rec = self.files.get(f.path)
        if not rec:
            return None
        try:
            st = (dest / safe_relpath(f.path)).stat()
        except OSError:
            return None
        if rec.get("size") != f.size:
            return None
        if f.sha256 and rec.get("sha256") != f.sha256:
            return None
        if not f.sha256 and f.blob_id and rec.get("blob_id") != f.blob_id:
            return None
        if st.st_size != f.size or st.st_mtime_ns != rec.get("mtime_ns"):
            return None
        return VerifiedFile.model_validate(rec)

    def record(self, v: VerifiedFile) -> None:
        with self._lock:
            self.files[v.relpath] = v.model_dump()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(self.files, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


def needed_bytes(files: list[RemoteFile], dest: Path) -> int:
    """Bytes still to fetch into ``dest`` (what is verified or partially there is subtracted)."""
    state = _State(dest)
    total = 0
    for f in files:
        if state.valid(dest, f):
            continue
        part = _part_path(dest, f)
        have = part.stat().st_size if part.exists() else 0
        total += max(f.size - have, 0)
    return total


def check_disk(files: list[RemoteFile], dest: Path, reserve: int = 64 << 20) -> None:
    """Raise NotEnoughDisk before starting when the files cannot fit."""
    need = needed_bytes(files, dest)
    if need == 0:
        return
    free = free_bytes(dest)
    if need + reserve > free:
        raise NotEnoughDisk(need + reserve, free, str(dest))


def _part_path(dest: Path, f: RemoteFile) -> Path:
    """Partial bytes are keyed by expected content and path: two files with equal bytes
    (two ``{}`` configs) never share one, and another revision's bytes are never resumed."""
    content = f.sha256 or f.blob_id or "unknown"
    where = hashlib.sha256(f.path.encode()).hexdigest()[:12]
    return dest / STATE_DIR / "partial" / f"{safe_component(content, 64)}-{where}.part"


def download_files(
    repo_id: str,
    revision: str,
    files: list[RemoteFile],
    dest: Path,
    *,
    token: str | None = None,
    progress: ProgressSink | None = None,
    max_workers: int = 8,
    retries: int = 5,
    cancel: threading.Event | None = None,
) -> list[VerifiedFile]:
    """Fetch ``files`` of ``repo_id`` at commit ``revision`` into ``dest``, verified.

    Returns one VerifiedFile per file (already-verified files are not fetched again).
    Raises a HubError that says what to do; unfinished bytes stay for the next attempt.
    Setting ``cancel`` stops every file at its next chunk and raises PullCancelled.

    The first file that fails stops the others (``DownloadStopped``), and its error is the
    one raised, whatever its type: a worker's exception is never hidden behind the
    others' stops.
    """
    progress = progress or NullProgress()
    for f in files:
        safe_relpath(f.path)  # refuse an unsafe name before writing anything
    dest.mkdir(parents=True, exist_ok=True)
    state = _State(dest)
    results: dict[str, VerifiedFile] = {}
    todo = []
    for f in files:
        done = state.valid(dest, f)
        if done is not None:
            results[f.path] = done
        else:
            todo.append(f)
    progress.begin(sum(f.size for f in todo), len(todo))
    try:
        if todo:
            tok = token if token is not None else client.token()
            workers = max(1, min(max_workers, len(todo)))
            job = _Job(repo_id, revision, dest, state, tok, progress, retries, cancel)
            if workers == 1:
                for f in todo:
                    results[f.path] = job.fetch(f)
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="famous-dl") as pool:
                    futures = {pool.submit(job.fetch, f): f.path for f in todo}
                    errors = []
                    for future in as_completed(futures):  # a failure stops the others now
                        try:
                            results[futures[future]] = future.result()
                        except BaseException as exc:
                            job.cancel.set()
                            errors.append(exc)
                    if errors:
                        raise _reported(errors, job.stop.is_set(), repo_id)
    finally:
        progress.end()
    return [results[f.path] for f in files]


def _reported(errors: list[BaseException], cancelled: bool, repo_id: str) -> BaseException:
    """The error a failed download reports: the cancellation, else the first real failure
    (a HubError first), never a file that only stopped because another failed."""
    if cancelled:
        return next((e for e in errors if isinstance(e, PullCancelled)), PullCancelled(repo_id))
    causes = [e for e in errors if not isinstance(e, DownloadStopped)] or errors
    return next((e for e in causes if isinstance(e, HubError)), causes[0])


def _expected_digest(f: RemoteFile, etag: str | None) -> str | None:
    """sha256 for LFS files, the git blob id for small files, else a sha256-looking ETag."""
    if f.sha256:
        return f.sha256
    if f.blob_id:
        return f.blob_id
    if etag and len(etag) == 64 and all(c in "0123456789abcdef" for c in etag.lower()):
        return etag.lower()
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Job:
    def __init__(
        self,
        repo_id: str,
        revision: str,
        dest: Path,
        state: _State,
        token: str | None,
        progress: ProgressSink,
        retries: int,
        stop: threading.Event | None = None,
    ) -> None:
        self.repo_id, self.revision, self.dest, self.state = repo_id, revision, dest, state
        self.token, self.progress, self.retries = token, progress, retries
        self.cancel = threading.Event()  # another file failed
        self.stop = stop or threading.Event()  # the caller cancelled the pull
        self.timeout = download_timeout()
        self.endpoint = client.endpoint()

    def fetch(self, f: RemoteFile) -> VerifiedFile:
        final = self.dest / safe_relpath(f.path)
        part = _part_path(self.dest, f)
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        self.progress.file(f.path, f.size, min(have, f.size))
        failures = 0
        bad_checksums = 0
        while True:
            self._check_stopped(f)
            try:
                digest, etag = self._stream(f, part)
            except _Retry as exc:
                self._check_stopped(f)
                failures += 1
                if failures > self.retries:
                    raise DownloadFailed(f.path, str(exc.__cause__ or exc)) from exc
                self.stop.wait(min(0.25 * 2 ** (failures - 1), 4.0))  # a cancel cuts it short
                continue
            want = _expected_digest(f, etag)
            if want is not None and digest != want:
                part.unlink(missing_ok=True)
                bad_checksums += 1
                self.progress.restart(f.path)
                if bad_checksums >= 2:
                    raise ChecksumMismatch(f.path, want, digest)
                continue
            break
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        sha256 = f.sha256 or (digest if f.blob_id is None else _file_sha256(final))
        verified = VerifiedFile(
            relpath=f.path,
            size=f.size,
            sha256=sha256,
            blob_id=f.blob_id,
            mtime_ns=final.stat().st_mtime_ns,
        )
        self.state.record(verified)
        self.progress.done(f.path)
        return verified

    def _check_stopped(self, f: RemoteFile) -> None:
        if self.stop.is_set():
            raise PullCancelled(self.repo_id)
        if self.cancel.is_set():
            raise DownloadStopped(f.path)

    def _stream(self, f: RemoteFile, part: Path) -> tuple[str, str | None]:
        """One GET (resuming ``part``); returns (hex digest, server etag). Raises _Retry."""
        from huggingface_hub import get_session, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

        have = part.stat().st_size if part.exists() else 0
        if have > f.size:
            part.unlink()
            have = 0
        git_size = f.size if f.sha256 is None and f.blob_id is not None else None
        digest = _Digest(git_size, threaded=f.size >= THREADED_HASH_MIN)
        if have:
            digest.prefix(part, have)
        if have == f.size:
            return digest.hexdigest(), None
        url = hf_hub_url(self.repo_id, f.path, revision=self.revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        etag = None
        try:
            with get_session().stream("GET", url, headers=headers, timeout=self.timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    try:
                        hf_raise_for_status(r)
                    except _http_errors() as exc:
                        digest.abandon()
                        raise self._http_error(exc, f) from exc
                history = [*list(r.history), r]
                etag = next(
                    (
                        h.headers.get("X-Linked-Etag") or h.headers.get("ETag")
                        for h in history
                        if h.headers.get("X-Linked-Etag") or h.headers.get("ETag")
                    ),
                    None,
                )
                etag = etag.strip('"').removeprefix("W/").strip('"') if etag else None
                mode = "ab"
                if have and r.status_code != 206:  # the server ignored Range: start over
                    self.progress.restart(f.path)
                    digest.abandon()
                    digest = _Digest(git_size, threaded=f.size >= THREADED_HASH_MIN)
                    mode, have = "wb", 0
                received = have
                with open(part, mode) as out:
                    for chunk in r.iter_bytes():
                        if self.cancel.is_set() or self.stop.is_set():
                            raise _Retry("cancelled")
                        received += len(chunk)
                        if received > f.size:
                            raise _Retry(f"server sent more than {f.size} bytes")
                        out.write(chunk)
                        digest.feed(chunk)
                        self.progress.advance(f.path, len(chunk))
                if received != f.size:
                    raise _Retry(f"connection closed after {received} of {f.size} bytes")
        except _Retry:
            digest.abandon()
            raise
        except HubError:
            raise
        except Exception as exc:
            digest.abandon()
            if client.is_connection_error(exc) or isinstance(exc, OSError):
                disk_full = isinstance(exc, OSError) and exc.errno == 28  # ENOSPC
                if disk_full and not client.is_connection_error(exc):
                    raise NotEnoughDisk(
                        f.size - have, free_bytes(part.parent), str(part.parent)
                    ) from exc
                kind = "timed out" if "Timeout" in type(exc).__name__ else "connection failed"
                raise _Retry(f"{kind} ({type(exc).__name__}: {exc})") from exc
            raise
        return digest.hexdigest(), etag

    def _http_error(self, exc: BaseException, f: RemoteFile) -> BaseException:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        if isinstance(exc, RemoteEntryNotFoundError):
            return FileMissing(self.repo_id, f.path)
        mapped = client.translate(exc, self.repo_id)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status >= 500:
            return _Retry(f"server error {status}")
        return mapped or exc


with contextlib.suppress(Exception):  # keep httpx quiet about retried connections
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
