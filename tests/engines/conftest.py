"""Fixtures of the engine tests: one tiny random Llama, in each engine's own format.

The same checkpoint (``tiny_hf.write_llama``) is served as safetensors by the transformers
worker, converted by ``mlx_lm.convert`` for MLX and by ``tiny_ov.convert_llama`` for
OpenVINO. The gateway comes from the serving tests' harness
(``tests/serving/serving_harness.py``); every process a fixture starts, that fixture stops.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import has_module

HERE = Path(__file__).resolve().parent
SERVING = HERE.parent / "serving"


if str(SERVING) not in sys.path:
    sys.path.insert(0, str(SERVING))  # the harness and the tiny GGUF writer live there
import serving_harness as harness  # noqa: E402


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_hf import write_llama

    return write_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="session")
def mlx_model(hf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (has_module("mlx") and has_module("mlx_lm")):
        pytest.skip("MLX is not installed: pip install 'famous[mlx]'")
    from mlx_lm import convert

    out = tmp_path_factory.mktemp("mlx") / "tiny-llama-mlx"
    convert(hf_path=str(hf_model), mlx_path=str(out))
    return out


@pytest.fixture(scope="session")
def ov_model(hf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (has_module("openvino_genai") and has_module("openvino_tokenizers")):
        pytest.skip("OpenVINO GenAI is not installed: pip install 'famous[openvino]'")
    from tiny_ov import convert_llama

    return convert_llama(hf_model, tmp_path_factory.mktemp("ov") / "tiny-llama-ov")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real ``famous serve`` with no models yet; tests register theirs by runtime."""
    gw = harness.start_gateway(tmp_path_factory.mktemp("famous-home"), "--keep-alive", "-1")
    try:
        yield gw
    finally:
        harness.stop_gateway(gw)
