"""The read-only commands' recent detection: this machine's report reused for a few seconds,
a captured root always read afresh, a stale or damaged cache detected again."""

from __future__ import annotations

import json
from pathlib import Path

from famous.hardware import Host, detect
from famous.plain import to_plain
from famous.services import machine

from .conftest import machine_root


def _cache(home: Path) -> Path:
    return home / "cache" / "machine.json"


def test_this_machine_is_detected_once_within_the_window(famous_home: Path) -> None:
    first = machine.recent_report()
    now = detect(Host.from_env())  # free memory and disk move between two detections
    assert to_plain(first.cpus) == to_plain(now.cpus)
    assert to_plain(first.devices) == to_plain(now.devices)
    assert first.memory.total_bytes == now.memory.total_bytes
    data = json.loads(_cache(famous_home).read_text())
    data["report"]["warnings"] = ["marker: answered from the recent detection"]
    _cache(famous_home).write_text(json.dumps(data))
    assert machine.recent_report().warnings == ["marker: answered from the recent detection"]
    data["detected_at"] -= machine.RECENT_SECONDS + 1  # stale: detected again
    _cache(famous_home).write_text(json.dumps(data))
    assert "marker: answered from the recent detection" not in machine.recent_report().warnings


def test_a_captured_root_is_never_taken_from_the_cache(famous_home: Path, monkeypatch) -> None:
    machine.recent_report()
    root = machine_root("i5-3570k+arc-a580+gtx1080ti")
    assert machine.recent_report(str(root)) == detect(Host.fake(root))
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(root))
    assert machine.recent_report() == detect(Host.fake(root))


def test_a_damaged_or_unwritable_cache_only_costs_a_detection(famous_home: Path) -> None:
    famous_home.mkdir(parents=True, exist_ok=True)
    (famous_home / "cache").mkdir()
    _cache(famous_home).write_text("{not json")
    assert machine.recent_report().cpus
    _cache(famous_home).unlink()
    _cache(famous_home).mkdir()  # a folder where the file would go
    assert machine.recent_report().cpus
