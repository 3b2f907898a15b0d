"""Fixtures for the foundation tests: real machine captures and a private FAMOUS_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

MACHINES = Path(__file__).resolve().parents[2].parent / "shared" / "machines"


def machine_names() -> list[str]:
    if not MACHINES.is_dir():
        return []
    return sorted(p.name for p in MACHINES.iterdir() if (p / "machine-root").is_dir())


def machine_root(name: str) -> Path:
    if not MACHINES.is_dir():
        pytest.skip(f"machine captures not found at {MACHINES} (shared/ beside the repo)")
    return MACHINES / name / "machine-root"


@pytest.fixture(autouse=True)
def famous_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FAMOUS_HOME and reads the machine from captures only."""
    home = tmp_path / "famous-home"
    monkeypatch.setenv("FAMOUS_HOME", str(home))
    monkeypatch.delenv("FAMOUS_HARDWARE_ROOT", raising=False)
    for key in ("FAMOUS_HTTP_PORT", "FAMOUS_CONTEXT_SIZE", "FAMOUS_KEEP_ALIVE"):
        monkeypatch.delenv(key, raising=False)
    return home
