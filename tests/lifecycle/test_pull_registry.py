"""The background pulls of a long-lived process (``famous.services.pulls``): what a client
polls for while one runs (bytes, files, rate, time left), dedup of a model already pulling,
cancel, and that only the last finished ones are kept."""

from __future__ import annotations

import threading

from famous.hub.errors import PullCancelled, RepoNotFound
from famous.services.pulls import PullRecord, PullRegistry, RecordingProgress


def test_progress_gives_bytes_files_rate_and_eta() -> None:
    now = [100.0]
    rec = PullRecord("p1", "org/m", None, None)
    sink = RecordingProgress(rec, clock=lambda: now[0])
    sink.begin(3000, 2)
    sink.file("a.gguf", 2000, 500)  # resumed: 500 bytes were there
    sink.file("b.json", 1000, 0)
    for _ in range(10):
        now[0] += 0.5
        sink.advance("a.gguf", 100)
    snap = rec.snapshot()
    assert snap["total_bytes"] == 3000 and snap["done_bytes"] == 1500
    assert snap["files"] == [
        {"name": "a.gguf", "total": 2000, "done": 1500},
        {"name": "b.json", "total": 1000, "done": 0},
    ]
    sink.restart("a.gguf")
    sink.done("b.json")
    assert [f["done"] for f in rec.snapshot()["files"]] == [0, 1000]


def test_rate_and_eta_while_running() -> None:
    import time

    rec = PullRecord("p1", "org/m", None, None)
    sink = RecordingProgress(rec)
    sink.begin(10_000, 1)
    sink.file("a", 10_000, 0)
    for _ in range(5):
        time.sleep(0.11)
        sink.advance("a", 1000)
    snap = rec.snapshot()
    assert snap["rate_bytes_per_s"] and 2000 < snap["rate_bytes_per_s"] < 20_000, snap
    assert snap["eta_s"] == round(5000 / snap["rate_bytes_per_s"], 1)
    rec.state = "done"
    assert rec.snapshot()["rate_bytes_per_s"] is None and rec.snapshot()["eta_s"] is None


def test_registry_dedups_cancels_and_keeps_the_last_finished() -> None:
    release = threading.Event()

    def run(rec: PullRecord) -> dict:
        if rec.model == "slow":
            rec.cancel.wait(10)
            raise PullCancelled(rec.model)
        if rec.model == "missing":
            raise RepoNotFound("org/missing")
        release.wait(10)
        return {"engine": "cpu", "variant": "q4"}

    registry = PullRegistry(keep=3, run=run)
    slow, created = registry.start("slow")
    again, created_again = registry.start("slow")
    assert created and not created_again and again is slow
    release.set()
    finished = [registry.start(f"m{i}")[0] for i in range(5)]
    for rec in finished:
        rec.thread.join(5)
    missing, _ = registry.start("missing")
    missing.thread.join(5)
    assert missing.snapshot()["state"] == "failed" and "org/missing" in missing.error
    pulls = registry.all()
    assert pulls[0] is slow and len(pulls) == 1 + 3  # running first, then the last 3
    assert pulls[1] is missing
    assert registry.get(finished[0].id) is None  # dropped: older than the last 3
    assert finished[-1].snapshot()["engine"] == "cpu"
    cancelled = registry.cancel(slow.id)
    assert cancelled is slow and slow.snapshot()["state"] == "cancelled"
    assert registry.cancel("nope") is None
    assert registry.cancel(missing.id).state == "failed"  # a finished pull stays as it was
