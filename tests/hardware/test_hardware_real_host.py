"""The live machine: whatever it is, the detector answers sanely and quickly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from famous.hardware import Host, detect
from famous.hardware.host import ENV_ROOT, FakeHost, MissingRoot, RealHost


def test_real_host_report_is_sane(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path / "not-created" / "famous"))
    start = time.perf_counter()
    report = detect(Host.real())
    assert time.perf_counter() - start < 10
    assert report.architecture and report.architecture != "unknown"
    if sys.platform.startswith("linux"):
        assert report.cpus and report.logical_cores >= 1
        assert report.memory.total_bytes > 0
    assert report.disk is not None and (report.disk.total_bytes or 0) > 0
    assert not (tmp_path / "not-created").exists()  # measuring never creates FAMOUS_HOME
    for dev in report.gpus:
        assert dev.integrated is not None


def test_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    assert isinstance(Host.from_env(), RealHost)
    monkeypatch.setenv(ENV_ROOT, str(tmp_path))
    host = Host.from_env()
    assert isinstance(host, FakeHost) and host.label == str(tmp_path)
    (tmp_path / "x").mkdir()
    assert isinstance(Host.from_env(tmp_path / "x"), FakeHost)
    with pytest.raises(MissingRoot):
        Host.from_env(tmp_path / "absent")


def test_missing_tool_is_missing_not_an_error() -> None:
    result = Host.real().run(["famous-no-such-tool-xyz", "--json"])
    assert result.status == "missing" and not result.ok


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX sleep")
def test_real_command_timeout() -> None:
    start = time.perf_counter()
    result = Host.real().run(["sleep", "5"], timeout=0.2)
    assert result.status == "timeout"
    assert time.perf_counter() - start < 3
