"""Download progress: a sink the downloader reports to; Rich bars on a terminal, plain lines
anywhere else (a log, CI, a pipe), so a pull is never silent for minutes.

The downloader calls the sink from worker threads; Rich's Progress is thread-safe, and
LineProgress writes each line whole under a lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

from famous.units import format_size


class ProgressSink(Protocol):
    def begin(self, total_bytes: int, files: int) -> None: ...
    def file(self, name: str, total: int, done: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def restart(self, name: str) -> None: ...
    def done(self, name: str) -> None: ...
    def end(self) -> None: ...
    def note(self, message: str) -> None: ...


class NullProgress:
    """Says nothing (--quiet, machine-readable output, or library use)."""

    def begin(self, total_bytes: int, files: int) -> None:
        pass

    def file(self, name: str, total: int, done: int) -> None:
        pass

    def advance(self, name: str, n: int) -> None:
        pass

    def restart(self, name: str) -> None:
        pass

    def done(self, name: str) -> None:
        pass

    def end(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RichProgress:
    """Per-file and overall bars (bytes, rate, ETA) on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def begin(self, total_bytes: int, files: int) -> None:
        self._progress.start()
        self._overall = self._progress.add_task(f"total ({files} files)", total=total_bytes)

    def file(self, name: str, total: int, done: int) -> None:
        label = name if len(name) <= 40 else "…" + name[-39:]
        self._tasks[name] = self._progress.add_task(label, total=total, completed=done)
        if done and self._overall is not None:
            self._progress.advance(self._overall, done)

    def advance(self, name: str, n: int) -> None:
        task = self._tasks.get(name)
        if task is not None:
            self._progress.advance(task, n)
        if self._overall is not None:
            self._progress.advance(self._overall, n)

    def restart(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is None:
            return
        current = next(t for t in self._progress.tasks if t.id == task).completed
        self._progress.update(task, completed=0)
        if self._overall is not None:
            self._progress.advance(self._overall, -current)

    def done(self, name: str) -> None:
        pass

    def end(self) -> None:
        self._progress.stop()

    def note(self, message: str) -> None:
        self._console.print(message)


class _FileState:
    def __init__(self, total: int, done: int, now: float) -> None:
        self.total, self.done = total, done
        self.started, self.start_bytes = now, done  # the rate counts this session's bytes
        self.last_line, self.next_step = now, 0
        self.step_up(done)

    def step_up(self, done: int) -> None:
        """The next tenth of the file to report at."""
        if self.total > 0:
            self.next_step = min(done * 10 // self.total + 1, 10)

    def rate(self, now: float) -> float:
        return (self.done - self.start_bytes) / max(now - self.started, 1e-6)


class LineProgress:
    """One line per event, for output that is not a terminal: a file's start and end, and
    every tenth of it or every ``interval`` seconds, whichever comes first, with bytes
    and rate. No carriage returns or escape codes, so logs stay readable."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self._interval, self._clock = interval, clock
        self._lock = threading.Lock()
        self._files: dict[str, _FileState] = {}
        self._started = clock()
        self._total = self._received = 0

    def _say(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def begin(self, total_bytes: int, files: int) -> None:
        with self._lock:
            self._started, self._total = self._clock(), total_bytes
            if files:
                plural = "" if files == 1 else "s"
                self._say(f"fetching {files} file{plural}, {format_size(total_bytes)}")

    def file(self, name: str, total: int, done: int) -> None:
        with self._lock:
            self._files[name] = _FileState(total, done, self._clock())
            resumed = f", resuming at {format_size(done)}" if done else ""
            self._say(f"{name}: {format_size(total)}{resumed}")

    def advance(self, name: str, n: int) -> None:
        with self._lock:
            state = self._files.get(name)
            if state is None:
                return
            self._received += n
            state.done += n
            now = self._clock()
            tenth = state.done * 10 // state.total if state.total > 0 else 0
            if state.done >= state.total:
                return  # done() says it
            if tenth >= state.next_step or now - state.last_line >= self._interval:
                state.last_line = now
                state.step_up(state.done)
                pct = 100 * state.done // state.total if state.total > 0 else 0
                self._say(
                    f"{name}: {pct}% {format_size(state.done)} of {format_size(state.total)}, "
                    f"{format_size(int(state.rate(now)))}/s"
                )

    def restart(self, name: str) -> None:
        with self._lock:
            state = self._files.get(name)
            if state is not None:
                self._files[name] = _FileState(state.total, 0, self._clock())
            self._say(f"{name}: starting over")

    def done(self, name: str) -> None:
        with self._lock:
            state = self._files.pop(name, None)
            if state is None:
                return
            now = self._clock()
            self._say(
                f"{name}: done, {format_size(state.total)} in {now - state.started:.1f}s "
                f"({format_size(int(state.rate(now)))}/s)"
            )

    def end(self) -> None:
        with self._lock:
            if self._total:
                took = self._clock() - self._started
                rate = self._received / max(took, 1e-6)
                self._say(
                    f"fetched {format_size(self._received)} in {took:.1f}s "
                    f"({format_size(int(rate))}/s)"
                )

    def note(self, message: str) -> None:
        with self._lock:
            self._say(message)


def default_progress(quiet: bool = False) -> ProgressSink:
    """Rich bars when stderr is a terminal, progress lines on stderr when it is not (a log,
    CI, a pipe), silence when quiet."""
    if quiet:
        return NullProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return LineProgress(sys.stderr)
