"""Pulls that run in the background of a long-lived process (the gateway's console API):
each is ``famous.hub.pull.pull`` in a thread of its own, whose progress sink records what
a client polls for: total and done bytes, each file, the rate and the time left.

Cancelling sets the pull's ``cancel`` event: the downloader stops every file at its next
chunk, nothing is registered, the file lock is released, and the unfinished bytes stay,
so the next pull of the model resumes them (``Range``). The registry keeps the running
pulls and the last ``keep`` finished ones.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from famous.errors import FamousError
from famous.hub.errors import PullCancelled

log = logging.getLogger("famous.services")

KEEP_FINISHED = 50
#: seconds of progress the rate is measured over
RATE_WINDOW = 5.0
#: seconds a cancel waits for the download threads to stop
CANCEL_WAIT = 30.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class PullRecord:
    """One pull and how far it got. Worker threads write it under ``lock``."""

    id: str
    model: str
    engine: str | None
    variant: str | None
    state: str = "running"  # running | done | failed | cancelled
    total_bytes: int | None = None
    files: dict[str, list[int]] = field(default_factory=dict)  # name -> [total, done]
    error: str | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    ended: float = 0.0  # monotonic time it finished: the order finished pulls are listed in
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0  # bytes that arrived in this pull (a resumed file's old ones not)
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    @property
    def running(self) -> bool:
        return self.state == "running"

    def _rate(self, now: float) -> float | None:
        recent = [(t, n) for t, n in self.samples if now - t <= RATE_WINDOW]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        (t0, n0), (t1, n1) = recent[0], recent[-1]
        return (n1 - n0) / max(now - t0, t1 - t0)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            done = sum(d for _, d in self.files.values())
            rate = self._rate(time.monotonic()) if self.running else None
            eta = None
            if rate and self.total_bytes is not None:
                eta = round(max(self.total_bytes - done, 0) / rate, 1)
            return {
                "id": self.id,
                "model": self.model,
                "engine": self.engine,
                "variant": self.variant,
                "state": self.state,
                "total_bytes": self.total_bytes,
                "done_bytes": done,
                "rate_bytes_per_s": round(rate, 1) if rate is not None else None,
                "eta_s": eta,
                "files": [{"name": n, "total": t, "done": d} for n, (t, d) in self.files.items()],
                "error": self.error,
                "hint": self.hint,
                "notes": list(self.notes),
                "resumable": self.state in ("cancelled", "failed") and done > 0,
                "cancelling": self.running and self.cancel.is_set(),
                "result": self.result,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
            }


class RecordingProgress:
    """A ``famous.hub.progress.ProgressSink`` writing into a PullRecord (called from the
    downloader's worker threads)."""

    def __init__(self, record: PullRecord, clock: Callable[[], float] = time.monotonic) -> None:
        self.record = record
        self.clock = clock

    def begin(self, total_bytes: int, files: int) -> None:
        del files
        with self.record.lock:
            self.record.total_bytes = total_bytes
            self.record.samples.append((self.clock(), self.record.received))

    def file(self, name: str, total: int, done: int) -> None:
        with self.record.lock:
            self.record.files[name] = [total, done]

    def advance(self, name: str, n: int) -> None:
        rec = self.record
        with rec.lock:
            if name in rec.files:
                rec.files[name][1] += n
            rec.received += n
            now = self.clock()
            if not rec.samples or now - rec.samples[-1][0] >= 0.1:
                rec.samples.append((now, rec.received))

    def restart(self, name: str) -> None:
        with self.record.lock:
            if name in self.record.files:
                self.record.files[name][1] = 0

    def done(self, name: str) -> None:
        with self.record.lock:
            if name in self.record.files:
                self.record.files[name][1] = self.record.files[name][0]

    def end(self) -> None:
        pass

    def note(self, message: str) -> None:
        with self.record.lock:
            self.record.notes.append(message)


def _run_pull(record: PullRecord) -> dict[str, Any]:
    """famous's pull of ``record.model``; what it installed, as plain data."""
    from famous.hub.pull import pull

    result = pull(
        record.model,
        engine=record.engine,
        variant=record.variant,
        progress=RecordingProgress(record),
        cancel=record.cancel,
    )
    a = result.artifact
    return {
        "model": result.model,
        "engine": result.engine,
        "variant": result.variant,
        "reused": result.reused,
        "downloaded_bytes": result.downloaded_bytes,
        "seconds": round(result.seconds, 2),
        "warnings": result.warnings,
        "artifact": {
            "id": a.id,
            "path": a.path,
            "format": a.format,
            "size_bytes": a.size_bytes,
        },
    }


def _ended(rec: PullRecord) -> float:
    return rec.ended


class PullRegistry:
    """The pulls of one process: started, listed, looked up and cancelled by id."""

    def __init__(
        self,
        keep: int = KEEP_FINISHED,
        run: Callable[[PullRecord], dict[str, Any]] = _run_pull,
    ) -> None:
        self.keep = keep
        self._run = run
        self._lock = threading.Lock()
        self._pulls: dict[str, PullRecord] = {}
        self._ids = itertools.count(1)

    def start(
        self, model: str, engine: str | None = None, variant: str | None = None
    ) -> tuple[PullRecord, bool]:
        """(the pull, True) for a new pull of ``model``; (the running one, False) when
        ``model`` is already being pulled."""
        with self._lock:
            for rec in self._pulls.values():
                if rec.running and rec.model == model:
                    return rec, False
            pull_id = f"pull-{next(self._ids)}-{secrets.token_hex(4)}"
            rec = PullRecord(pull_id, model, engine, variant)
            rec.thread = threading.Thread(
                target=self._work, args=(rec,), name=f"famous-{pull_id}", daemon=True
            )
            self._pulls[pull_id] = rec
            self._trim()
        rec.thread.start()
        return rec, True

    def _trim(self) -> None:
        finished = sorted((r for r in self._pulls.values() if not r.running), key=_ended)
        for rec in finished[: max(0, len(finished) - self.keep)]:
            del self._pulls[rec.id]

    def _work(self, rec: PullRecord) -> None:
        state, error, hint, result = "done", None, None, None
        try:
            result = self._run(rec)
        except PullCancelled:
            state = "cancelled"
        except FamousError as exc:
            state, error, hint = "failed", exc.message, exc.hint
        except Exception as exc:  # an OSError, or a fault of famous: the log has the traceback
            log.exception("pull of %s failed", rec.model)
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        if state == "failed" and rec.cancel.is_set():
            state = "cancelled"  # stopped while it was failing: what the user asked for
        with rec.lock:
            rec.state, rec.error, rec.hint, rec.result = state, error, hint, result
            rec.finished_at, rec.ended = _now(), time.monotonic()
            if result is not None:  # what the matchmaker chose, where the request left it open
                rec.engine, rec.variant = result["engine"], result["variant"]
            if state == "done" and rec.total_bytes is None:
                rec.total_bytes = 0  # installed already: nothing to fetch
        with self._lock:
            self._trim()

    def get(self, pull_id: str) -> PullRecord | None:
        with self._lock:
            return self._pulls.get(pull_id)

    def all(self) -> list[PullRecord]:
        """Running pulls first (oldest first), then finished ones (newest first)."""
        with self._lock:
            pulls = list(self._pulls.values())
        running = [r for r in pulls if r.running]
        finished = sorted((r for r in pulls if not r.running), key=_ended, reverse=True)
        return running + finished

    def cancel(self, pull_id: str, wait: float = CANCEL_WAIT) -> PullRecord | None:
        """Stop the pull and wait (at most ``wait`` seconds, blocking) for its threads;
        a finished pull stays as it ended."""
        rec = self.get(pull_id)
        if rec is None:
            return None
        if rec.running:
            rec.cancel.set()
            if rec.thread is not None:
                rec.thread.join(wait)
        return rec

    def close(self, wait: float = CANCEL_WAIT) -> None:
        """Cancel every running pull (the process is going away) and wait for them."""
        running = [r for r in self.all() if r.running]
        for rec in running:
            rec.cancel.set()
        deadline = time.monotonic() + wait
        for rec in running:
            if rec.thread is not None:
                rec.thread.join(max(0.0, deadline - time.monotonic()))
