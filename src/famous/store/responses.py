"""Stored answers of OpenAI's Responses API, so that ``previous_response_id`` can continue
a conversation and ``GET``/``DELETE /v1/responses/{id}`` can find one.

A SQLite file of its own (``FAMOUS_HOME/responses.db``), not a table in the catalog: what it
holds is users' conversations, not famous's state; it grows and is pruned on its own
schedule, and deleting it loses no model. Each row keeps the answer (the Response object)
and the whole conversation up to and including it (earlier turns, this input, this output),
so a follow-up needs one read. Retention: at most ``max_count`` responses and none older
than ``max_age`` seconds (1000 and 30 days by default), pruned on every write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from famous.store.paths import responses_path

DEFAULT_MAX_COUNT = 1000
DEFAULT_MAX_AGE = 30 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,             -- resp_…
    created_at REAL NOT NULL,        -- seconds since the epoch
    response TEXT NOT NULL,          -- the Response object (JSON)
    conversation TEXT NOT NULL       -- input items of every turn so far and this output (JSON)
)
"""


class ResponseStore:
    """One gateway's stored responses; safe to share between its requests (one lock)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self.path = path or responses_path()
        self.max_count = max_count
        self.max_age = max_age
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self, create: bool = True) -> sqlite3.Connection | None:
        """The connection, opened on first use; a reader (``create=False``) never makes the
        file, so looking an id up writes nothing under FAMOUS_HOME."""
        if self._conn is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            self.path.chmod(0o600)
            self._conn = conn
        return self._conn

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        """Keep ``response`` (its ``id`` is the key) and prune what retention drops."""
        now = time.time()
        with self._lock:
            db = self._db()
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                    (response["id"], now, json.dumps(response), json.dumps(conversation)),
                )
                db.execute("DELETE FROM responses WHERE created_at < ?", (now - self.max_age,))
                db.execute(
                    "DELETE FROM responses WHERE id NOT IN "
                    "(SELECT id FROM responses ORDER BY created_at DESC, rowid DESC LIMIT ?)",
                    (self.max_count,),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def get(self, response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The response and its conversation, or None (unknown, deleted or expired)."""
        with self._lock:
            db = self._db(create=False)
            row = None
            if db is not None:
                row = db.execute(
                    "SELECT response, conversation FROM responses WHERE id = ? AND created_at >= ?",
                    (response_id, time.time() - self.max_age),
                ).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def delete(self, response_id: str) -> bool:
        """Forget one response; False when there was none."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return False
            cursor = db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
