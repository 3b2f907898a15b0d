"""Fixtures of the export tests: tiny random Llama / Qwen2 models saved with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import make_model


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model("llama", tmp_path_factory.mktemp("export-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model("qwen2", tmp_path_factory.mktemp("export-qwen2"))


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_model(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture()
def famous_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FAMOUS_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def _litert_python() -> None:
    """The LiteRT converter lives in its own venv (litert-torch pins an older pydantic):
    ``FAMOUS_LITERT_PYTHON`` if set, else the suite's own environment, made once per machine by
    ``famous install-component litert`` (``provision.litert_python``)."""
    import os

    from provision import litert_python

    if not os.environ.get("FAMOUS_LITERT_PYTHON"):
        os.environ["FAMOUS_LITERT_PYTHON"] = str(litert_python())
