"""The LiteRT converter's environment as famous manages it: ``famous install-component
litert`` made the suite's converter (``provision.litert_home``), and ``famous build
--target litert`` finds it without ``FAMOUS_LITERT_PYTHON``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import provision
from famous.runtimes import environments
from famous.services.build import managed_converter


@pytest.fixture(scope="module")
def litert_home() -> Path:
    return provision.litert_home()


def test_install_component_litert_made_an_environment_of_its_own(litert_home: Path) -> None:
    [record] = (litert_home / "components" / "envs").glob("litert-*/environment.json")
    info = json.loads(record.read_text())
    assert info["component"] == "litert" and info["backend"] == "cpu"
    assert info["version"] == environments.litert_spec().version
    python = record.parent / "bin" / "python"
    # litert-torch's pinned pydantic, not famous's: why it needs its own environment
    pinned = environments.LITERT_REQUIREMENTS.read_text().split("pydantic==")[1].split()[0]
    shown = subprocess.run(
        [str(python), "-c", "import litert_torch, pydantic; print(pydantic.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == pinned
    said = (litert_home / provision.INSTALL_OUTPUT).read_text()
    assert "min; once per machine" in said and "famous build --target litert" in said


def test_a_litert_build_finds_the_managed_converter(
    litert_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(litert_home))
    monkeypatch.delenv("FAMOUS_LITERT_PYTHON", raising=False)
    managed = environments.installed_environment("litert", "cpu")
    assert managed is not None
    with managed_converter("litert") as python:
        from famous.genai.export.litert import converter_python

        assert python == str(managed.python) == converter_python()
    assert "FAMOUS_LITERT_PYTHON" not in os.environ  # restored
    with managed_converter("gguf") as python:
        assert python is None
    # the user's own converter wins
    monkeypatch.setenv("FAMOUS_LITERT_PYTHON", "/somewhere/python")
    with managed_converter("litert") as python:
        assert python is None


def test_without_a_converter_the_build_says_how_to_get_one(
    tiny_llama: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FAMOUS_LITERT_PYTHON"}
    env["FAMOUS_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "famous", "build", str(tiny_llama), "--target", "litert"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode != 0
    assert "famous install-component litert" in done.stderr, done.stderr
    assert not (tmp_path / "home" / "models").exists()  # nothing half-built registered
