"""Inter-process locks under FAMOUS_HOME so two famous commands never write the same thing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from famous.store.paths import models_dir


def _lock_path(key: str):
    folder = models_dir() / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")


@contextmanager
def held(
    key: str, on_wait: Callable[[], None] | None = None, timeout: float = -1
) -> Iterator[None]:
    """Hold the lock named ``key``; call ``on_wait`` once if another process holds it first."""
    lock = FileLock(str(_lock_path(key)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def try_held(key: str) -> Iterator[bool]:
    """Take the lock named ``key`` only if free; yields whether it was taken."""
    lock = FileLock(str(_lock_path(key)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
