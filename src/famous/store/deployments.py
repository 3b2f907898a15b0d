"""Deployments in the catalog: which model runs on which engine process, and how it is doing.

The gateway's supervisor writes these rows; ``famous ps`` / ``status`` / ``stop`` read them
without importing the gateway. A row is an intention plus a pid: readers must check the
process (``process_alive``) before believing ``status``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections import deque
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from famous.store import db
from famous.store.paths import logs_dir

STATUSES = ("starting", "ready", "stopped", "failed")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def safe_name(name: str) -> str:
    """A model name (``Qwen/Qwen2.5-0.5B``, ``hf.co/x:Q4``) as one safe file name component."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "model"
    return cleaned[:120]


def log_path_for(name: str) -> Path:
    """Where the engine process serving ``name`` writes its stdout and stderr."""
    return logs_dir() / f"{safe_name(name)}.log"


@dataclass
class DeploymentRecord:
    """One row of the ``deployments`` table."""

    name: str
    engine: str
    runtime: str
    status: str
    updated_at: str
    server: str | None = None
    pid: int | None = None
    port: int | None = None
    log_path: str | None = None
    started_at: str | None = None
    artifact_id: int | None = None
    server_reason: str | None = None  # why this server runs the model

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DeploymentRecord:
        keys = set(row.keys())
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in keys})


def upsert(conn: sqlite3.Connection, record: DeploymentRecord) -> None:
    """Insert or replace the row for ``record.name`` (one statement, atomic)."""
    if record.status not in STATUSES:
        raise ValueError(f"unknown deployment status {record.status!r}; one of {STATUSES}")
    cols = [f.name for f in fields(DeploymentRecord)]
    conn.execute(
        f"INSERT OR REPLACE INTO deployments ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})",
        [getattr(record, c) for c in cols],
    )


def set_status(conn: sqlite3.Connection, name: str, status: str, **changes: object) -> None:
    """Change a deployment's status (and optionally pid/port/…); a no-op for unknown names."""
    if status not in STATUSES:
        raise ValueError(f"unknown deployment status {status!r}; one of {STATUSES}")
    allowed = {f.name for f in fields(DeploymentRecord)} - {"name", "status", "updated_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"unknown deployment fields: {sorted(unknown)}")
    assignments = ["status = ?", "updated_at = ?", *(f"{k} = ?" for k in changes)]
    conn.execute(
        f"UPDATE deployments SET {', '.join(assignments)} WHERE name = ?",
        [status, now_iso(), *changes.values(), name],
    )


def get(conn: sqlite3.Connection, name: str) -> DeploymentRecord | None:
    row = conn.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
    return DeploymentRecord.from_row(row) if row else None


def list_all(conn: sqlite3.Connection) -> list[DeploymentRecord]:
    rows = conn.execute("SELECT * FROM deployments ORDER BY name").fetchall()
    return [DeploymentRecord.from_row(r) for r in rows]


def remove(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM deployments WHERE name = ?", (name,))


def read_all() -> list[DeploymentRecord]:
    """All deployments, or [] when there is no catalog yet (never creates one)."""
    conn = db.connect(create=False)
    if conn is None:
        return []
    try:
        return list_all(conn)
    finally:
        conn.close()


def process_alive(pid: int | None) -> bool:
    """True when ``pid`` runs and is not a zombie (a killed child not yet reaped is dead)."""
    if not pid or pid <= 0:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except ImportError:  # pragma: no cover - psutil is a core dependency
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    except Exception:
        return False


def tail(path: str | Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file ([] when it does not exist)."""
    if not path:
        return []
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return list(deque(data.splitlines(), maxlen=lines))
