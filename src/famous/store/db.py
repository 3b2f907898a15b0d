"""The SQLite catalog: one file under FAMOUS_HOME, WAL mode, versioned schema.

Migrations are an append-only list; ``connect`` applies the missing ones in one
transaction each, so a catalog written by an older famous opens in a newer one.
Readers never create the catalog: ``connect(create=False)`` on a missing file returns None.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from famous.errors import FamousError
from famous.store.paths import catalog_path

# Each entry moves the schema from version i to i + 1. Append only; never edit a shipped one.
MIGRATIONS: list[str] = [
    # 1: artifacts (verified files on disk), their files, deployments, engine selections.
    """
    CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL,             -- package name or repo id the user named
        engine TEXT NOT NULL,            -- engine the artifact was fetched for
        variant TEXT NOT NULL,           -- model option name (quantization etc.)
        format TEXT NOT NULL,            -- gguf, safetensors, mlx, openvino, onnx, …
        repo_id TEXT,                    -- Hub repo id, NULL for imports and builds
        revision TEXT,                   -- commit sha the files came from
        path TEXT NOT NULL,              -- file or directory an engine loads
        size_bytes INTEGER NOT NULL,
        source TEXT NOT NULL,            -- hub | import | build
        owned INTEGER NOT NULL,          -- 1 when famous may delete the files
        created_at TEXT NOT NULL,
        UNIQUE (model, engine, variant)
    );
    CREATE TABLE artifact_files (
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
        relpath TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT,
        etag TEXT,
        PRIMARY KEY (artifact_id, relpath)
    );
    CREATE TABLE deployments (
        name TEXT PRIMARY KEY,           -- the model name requests use
        artifact_id INTEGER REFERENCES artifacts(id),
        engine TEXT NOT NULL,
        runtime TEXT NOT NULL,
        server TEXT,                     -- which server runs (llama-server, …)
        pid INTEGER,
        port INTEGER,
        status TEXT NOT NULL,            -- starting | ready | stopped | failed
        log_path TEXT,
        started_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE selections (
        model TEXT PRIMARY KEY,          -- package name
        engine TEXT NOT NULL,            -- engine pinned by `famous use-engine`
        forced INTEGER NOT NULL DEFAULT 0,
        chosen_at TEXT NOT NULL
    );
    """,
    # 2: (famous.store.artifacts) when each verified file was last seen unchanged, so a
    # modified file is re-hashed before it is served; header facts of an artifact (JSON).
    """
    ALTER TABLE artifact_files ADD COLUMN mtime_ns INTEGER;
    ALTER TABLE artifacts ADD COLUMN metadata TEXT
    """,
    # 3: (famous.store.deployments) why the deployment's server was chosen (famous ps).
    """
    ALTER TABLE deployments ADD COLUMN server_reason TEXT
    """,
    # 4: (famous.store.measurements) what `famous bench` measured, per model, engine,
    # variant and machine fingerprint (famous.hardware.fingerprint): the newest run only.
    """
    CREATE TABLE measurements (
        model TEXT NOT NULL,             -- package name
        engine TEXT NOT NULL,
        variant TEXT NOT NULL,           -- model option
        fingerprint TEXT NOT NULL,       -- the machine it ran on
        pp_tps REAL NOT NULL,            -- prompt processing, tokens per second
        decode_tps REAL NOT NULL,        -- decode at one stream, tokens per second
        streams INTEGER NOT NULL,        -- concurrent streams of the throughput run
        throughput_tps REAL NOT NULL,    -- generated tokens per second over all streams
        ttft_ms REAL NOT NULL,           -- time to first token of one stream
        peak_rss_mb REAL,                -- peak resident memory of the engine's processes
        prompt_tokens INTEGER NOT NULL,  -- the workload: prompt length and answer budget
        max_tokens INTEGER NOT NULL,
        famous_version TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        PRIMARY KEY (model, engine, variant, fingerprint)
    )
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class CatalogError(FamousError, RuntimeError):
    """The catalog cannot be used (newer schema, corrupt file)."""


def _apply_migrations(conn: sqlite3.Connection, path: Path) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise CatalogError(
            f"{path} has schema version {current}, newer than this famous understands "
            f"({SCHEMA_VERSION}); upgrade famous"
        )
    for version in range(current, SCHEMA_VERSION):
        with conn:  # one transaction per migration
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != version:
                continue  # another process migrated meanwhile
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


def connect(create: bool = True, path: Path | None = None) -> sqlite3.Connection | None:
    """Open the catalog (migrating it); None when it does not exist and ``create`` is False."""
    path = path or catalog_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        _apply_migrations(conn, path)
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"cannot open the catalog {path}: {exc}") from exc
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error: a state change is all or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
