"""Ollama's ``/api/pull``: a famous pull (``famous.hub.pull.pull``, in a thread) whose
progress goes out as Ollama's objects (``{status, digest, total, completed}`` …
``{status: "success"}``, or ``{error}``) while the files download.

Ollama's ``digest`` is a layer's hash, known before its download; famous knows a file's
hash only once it is verified, so ``digest`` carries the file's name. A client that goes
away does not stop the pull: it finishes and is installed, as a ``famous pull`` would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from famous.errors import FamousError
from famous.hub.names import parse_reference
from famous.serve.errors import invalid

#: seconds between two progress objects of one file (a download reports every chunk)
_EVERY = 0.25


class QueueProgress:
    """A ``famous.hub.progress.ProgressSink`` that hands Ollama's objects to the event
    loop (the downloader calls it from its worker threads)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict]) -> None:
        self.loop = loop
        self.queue = queue
        self.files: dict[str, list[int]] = {}
        self.sent: dict[str, float] = {}

    def _put(self, obj: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, obj)

    def _file(self, name: str, force: bool = False) -> None:
        now = time.monotonic()
        total, done = self.files[name]
        if force or done >= total or now - self.sent.get(name, 0.0) >= _EVERY:
            self.sent[name] = now
            self._put(
                {"status": f"pulling {name}", "digest": name, "total": total, "completed": done}
            )

    def begin(self, total_bytes: int, files: int) -> None:
        del total_bytes, files
        self._put({"status": "pulling manifest"})

    def file(self, name: str, total: int, done: int) -> None:
        self.files[name] = [total, done]
        self._file(name, force=True)

    def advance(self, name: str, n: int) -> None:
        if name in self.files:
            self.files[name][1] += n
            self._file(name)

    def restart(self, name: str) -> None:
        if name in self.files:
            self.files[name][1] = 0
            self._file(name, force=True)

    def done(self, name: str) -> None:
        if name in self.files:
            self.files[name][1] = self.files[name][0]
            self._file(name, force=True)

    def end(self) -> None:
        self._put({"status": "verifying sha256 digest"})

    def note(self, message: str) -> None:
        self._put({"status": message})


def _pull(name: str, progress: QueueProgress) -> None:
    from famous.hub.pull import pull

    pull(name, progress=progress)


def check_pull_name(name: str) -> str:
    """``name`` when famous can pull it: a package name or a Hub repo, never a local path
    (a client of the gateway does not name the gateway's files)."""
    try:
        ref = parse_reference(name)
    except FamousError as exc:
        raise invalid(str(exc), "model") from None
    if ref.kind == "path":
        raise invalid(f"{name!r} is a local path: pull takes a package name or ORG/NAME", "model")
    return name


async def pull_events(name: str) -> AsyncIterator[dict[str, Any]]:
    """Ollama's progress objects of pulling ``name`` (``check_pull_name``), ending with
    success or an error."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    task = asyncio.create_task(
        asyncio.to_thread(_pull, name, QueueProgress(asyncio.get_running_loop(), queue))
    )
    while not (task.done() and queue.empty()):
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield getter.result()
        else:
            getter.cancel()
    try:
        task.result()
    except Exception as exc:  # the pull's own errors say what went wrong; so does an OSError
        hint = getattr(exc, "hint", None)
        yield {"error": f"{exc} ({hint})" if hint else str(exc) or type(exc).__name__}
        return
    yield {"status": "writing manifest"}
    yield {"status": "success"}
