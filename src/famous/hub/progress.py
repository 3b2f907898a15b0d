"""Download progress: a sink the downloader reports to, and a Rich implementation.

The downloader calls the sink from worker threads; Rich's Progress is thread-safe.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class ProgressSink(Protocol):
    def begin(self, total_bytes: int, files: int) -> None: ...
    def file(self, name: str, total: int, done: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def restart(self, name: str) -> None: ...
    def done(self, name: str) -> None: ...
    def end(self) -> None: ...
    def note(self, message: str) -> None: ...


class NullProgress:
    """Says nothing (not a TTY, --quiet, or library use)."""

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


def default_progress(quiet: bool = False) -> ProgressSink:
    """Rich bars when stderr is a terminal and not quiet; silence otherwise."""
    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress()
