"""Engines pinned by ``famous use-engine``: one row per package, in the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from famous.store.db import connect, transaction


@dataclass(kw_only=True)
class PinnedEngine:
    model: str
    engine: str
    forced: bool
    chosen_at: str


def pinned_engine(model: str) -> PinnedEngine | None:
    """The user's pinned engine for ``model``; never creates the catalog."""
    conn = connect(create=False)
    if conn is None:
        return None
    try:
        row = conn.execute(
            "SELECT model, engine, forced, chosen_at FROM selections WHERE model = ?", (model,)
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return PinnedEngine(
        model=row["model"],
        engine=row["engine"],
        forced=bool(row["forced"]),
        chosen_at=row["chosen_at"],
    )


def pin_engine(model: str, engine: str, forced: bool) -> None:
    conn = connect(create=True)
    assert conn is not None
    with transaction(conn):
        conn.execute(
            "INSERT INTO selections (model, engine, forced, chosen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(model) DO UPDATE SET engine = excluded.engine, "
            "forced = excluded.forced, chosen_at = excluded.chosen_at",
            (model, engine, int(forced), datetime.now(UTC).isoformat(timespec="seconds")),
        )
    conn.close()


def unpin_engine(model: str) -> bool:
    """Back to automatic selection; True when a pin was removed."""
    conn = connect(create=False)
    if conn is None:
        return False
    with transaction(conn):
        removed = conn.execute("DELETE FROM selections WHERE model = ?", (model,)).rowcount
    conn.close()
    return bool(removed)
