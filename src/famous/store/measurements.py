"""What ``famous bench`` measured: one row per model, engine, variant and machine
fingerprint (``famous.hardware.fingerprint``), the newest run replacing the one before.

The matchmaker reads them (``famous.matchmaker.measured``) to rank engines by what this
machine really does; readers never create the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from famous.store.db import connect, transaction

_FIELDS = (
    "model",
    "engine",
    "variant",
    "fingerprint",
    "pp_tps",
    "decode_tps",
    "streams",
    "throughput_tps",
    "ttft_ms",
    "peak_rss_mb",
    "prompt_tokens",
    "max_tokens",
    "famous_version",
    "measured_at",
)


@dataclass(kw_only=True)
class Measurement:
    """One engine × variant on one machine under the bench's fixed workload."""

    model: str
    engine: str
    variant: str
    fingerprint: str
    pp_tps: float  # prompt tokens processed per second
    decode_tps: float  # tokens per second of one stream, after its first token
    streams: int  # concurrent streams of the throughput run
    throughput_tps: float  # generated tokens per second over all streams together
    ttft_ms: float  # time to the first streamed token of one request
    peak_rss_mb: float | None  # peak resident memory of the engine's process tree
    prompt_tokens: int
    max_tokens: int
    famous_version: str = ""
    measured_at: str = ""


def record_measurement(m: Measurement) -> Measurement:
    """Store ``m`` (stamped with famous's version and the time), replacing the same key."""
    from famous import __version__

    m.famous_version = m.famous_version or __version__
    m.measured_at = m.measured_at or datetime.now(UTC).isoformat(timespec="seconds")
    conn = connect(create=True)
    assert conn is not None
    try:
        with transaction(conn):
            conn.execute(
                f"INSERT OR REPLACE INTO measurements ({', '.join(_FIELDS)}) "
                f"VALUES ({', '.join('?' for _ in _FIELDS)})",
                tuple(getattr(m, f) for f in _FIELDS),
            )
    finally:
        conn.close()
    return m


def measurements_for(model: str, fingerprint: str | None = None) -> list[Measurement]:
    """``model``'s measurements (on one machine when ``fingerprint`` is given), by engine
    and variant; [] when there is no catalog yet."""
    conn = connect(create=False)
    if conn is None:
        return []
    query = f"SELECT {', '.join(_FIELDS)} FROM measurements WHERE model = ?"
    args: tuple[str, ...] = (model,)
    if fingerprint is not None:
        query += " AND fingerprint = ?"
        args += (fingerprint,)
    try:
        rows = conn.execute(query + " ORDER BY engine, variant, fingerprint", args).fetchall()
    finally:
        conn.close()
    return [Measurement(**dict(row)) for row in rows]


def forget_measurements(model: str, fingerprint: str | None = None) -> int:
    """Drop ``model``'s measurements (on one machine); how many rows went."""
    conn = connect(create=False)
    if conn is None:
        return 0
    try:
        with transaction(conn):
            sql, args = "DELETE FROM measurements WHERE model = ?", (model,)
            if fingerprint is not None:
                sql, args = sql + " AND fingerprint = ?", (model, fingerprint)
            return conn.execute(sql, args).rowcount
    finally:
        conn.close()
