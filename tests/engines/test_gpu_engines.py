"""vLLM and llama.cpp with GPU offload, through famous's gateway: only on a lent GPU machine.

Elsewhere each test skips and says why. The throughput comparison is
``benchmarks/gpu_engines.py``; these tests check the engines answer correctly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import openai
import pytest
from engine_helpers import register, streamed

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

MESSAGES = [{"role": "user", "content": "tell me a story about silicon"}]


def _gpu() -> str | None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.gpu_engines import find_gpu

    return find_gpu()


@pytest.fixture(scope="module")
def gpu() -> str:
    found = _gpu()
    if found is None:
        pytest.skip("no GPU on this machine (no nvidia-smi -L, no /dev/kfd)")
    return found


def _answers_stream_equals_whole(gateway, name: str) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=900)
    whole = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=24, temperature=0
    )
    assert whole.choices[0].message.content
    text, finish, _ = streamed(
        client.chat.completions.create(
            model=name, messages=MESSAGES, max_tokens=24, temperature=0, stream=True
        )
    )
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason


def test_vllm_through_the_gateway(gpu: str, gateway, tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed: pip install 'famous[vllm]'")
    from tiny_hf import write_llama

    model = write_llama(tmp_path / "vllm-tiny", hold_down_specials=True)
    register(
        gateway,
        "tiny-vllm",
        model,
        "vllm",
        **{"max-model-len": 512, "gpu-memory-utilization": 0.3, "enforce-eager": True},
    )
    _answers_stream_equals_whole(gateway, "tiny-vllm")
    dep = next(d for d in gateway.ps() if d["name"] == "tiny-vllm")
    assert dep["server"] == "vllm serve"


def test_llamacpp_gpu_offload_through_the_gateway(gpu: str, gateway, tmp_path: Path) -> None:
    import llama_cpp
    from tiny_gguf import write_llama as write_gguf

    from famous.runtimes.llamacpp import find_llama_server

    if find_llama_server() is None and not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("llama-cpp-python is a CPU build here and no GPU llama-server is installed")
    model = write_gguf(tmp_path / "gpu.gguf")
    register(gateway, "tiny-gguf-gpu", model, "llamacpp", **{"n-gpu-layers": -1})
    _answers_stream_equals_whole(gateway, "tiny-gguf-gpu")
    log = Path(next(d for d in gateway.ps() if d["name"] == "tiny-gguf-gpu")["log_path"])
    text = log.read_text(errors="replace").lower()
    assert "offloaded" in text or "cuda" in text or "rocm" in text, text[-3000:]
