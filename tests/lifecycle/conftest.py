from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub_server import HubServer, hub_server  # noqa: F401

from famous.hardware.report import CpuGroup, HardwareReport, MemoryInfo


@pytest.fixture
def famous_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "famous-home"
    monkeypatch.setenv("FAMOUS_HOME", str(home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("FAMOUS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved token leaks in
    yield home


@pytest.fixture
def cpu_report() -> HardwareReport:
    """A plain 8 GiB x86-64 machine, so engine choices do not depend on the test host."""
    return HardwareReport(
        architecture="amd64",
        cpus=[
            CpuGroup(
                architecture="amd64",
                manufacturer_id="AuthenticAMD",
                model_name="Test CPU",
                flags=["avx2", "fma", "sse4_2"],
                physical_cores=4,
                logical_cores=8,
            )
        ],
        memory=MemoryInfo(total_bytes=16 << 30, available_bytes=8 << 30),
    )


@pytest.fixture
def hub(hub_server: HubServer, famous_home: Path) -> HubServer:  # noqa: F811
    return hub_server


@pytest.fixture
def cli(famous_home: Path, cpu_report: HardwareReport, monkeypatch: pytest.MonkeyPatch):
    """Run famous's CLI in-process (typer's CliRunner) on the test machine ``cpu_report``."""
    from typer.testing import CliRunner

    import famous.hardware.detector as detector
    from famous.cli.main import app

    monkeypatch.setattr(detector, "detect", lambda *a, **k: cpu_report)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))
