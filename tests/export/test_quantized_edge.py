"""``famous build --target executorch|litert --quant dynamic-int8``: int8 programs run by
their own runtimes, served like the fp32 ones, with the recipe and the parity (KL / top-1
against the fp32 eager model) recorded in the package.

Thresholds are relative to famous's eager ``dynamic-int8`` (``famous quantize``'s recipe of
the same scheme, int8 weights per channel and int8 activations per token) measured on the
same teacher-forced positions: on this tiny random model it gives KL ≈ 3.6e-3 and top-1 ≈ 94 %
(weight-only int4 gives KL ≈ 0.35, top-1 ≈ 32 %), the XNNPACK programs ≈ 3-4e-3 and 92 %. A
program within twice famous's eager KL and 10 points of its top-1 quantizes like it; a wrong
scale or a dropped layer lands near the int4 numbers or beyond.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_edge_targets import _litert_ready
from typer.testing import CliRunner

from famous.cli.main import app

runner = CliRunner()
SUFFIX = {"executorch": "pte", "litert": "tflite"}


def _build(model_dir: Path, target: str, name: str, *recipes: str):
    quant = [a for r in recipes for a in ("--quant", r)]
    args = ["build", str(model_dir), "--target", target, "--prefill", "8"]
    args += ["--max-seq-len", "32", "--name", name, "--format", "json", *quant]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def eager_dynamic_int8(tiny_llama: Path):
    """famous's own eager dynamic-int8 on the positions the build scores."""
    from famous.genai.edge_quality import model_parity
    from famous.genai.quality import load_reference
    from famous.genai.quantize.modules import apply_recipe
    from famous.genai.quantize.recipe import get_recipe

    model = load_reference(tiny_llama, 32)
    apply_recipe(model, get_recipe("dynamic-int8"))
    return model_parity(model, tiny_llama, 32)


def _check_int8_package(target: str, name: str, model_dir: Path, home: Path, eager) -> Path:
    """The build's JSON, model.yaml, build.json and catalog row all record the recipe and
    the parity; the program is smaller than the fp32 weights and quantizes like famous's
    eager dynamic-int8."""
    from famous.genai.export.safetensors_stream import parameter_count
    from famous.manifests.loader import find_package
    from famous.store.artifacts import list_artifacts

    r = _build(model_dir, target, name, "dynamic-int8")
    assert r.exit_code == 0, r.output
    option = json.loads(r.stdout)["options"][0]
    assert option["name"] == "dynamic-int8" and option["recipe"] == "dynamic-int8"
    assert option["quantization"] == "int8-channel+dyn-act"
    parity = option["parity"]
    assert parity["reference"] == "famous fp32 eager" and parity["positions"] == 50
    assert 1e-6 < parity["kl"] < 2 * eager.kl, (parity, eager)  # quantized, and like famous's
    assert parity["top1"] >= eager.top1 - 0.10, (parity, eager)
    assert parity["decode_tok_s"] > 0
    artifact = home / "packages" / name / "artifacts" / f"{name}-dynamic-int8.{SUFFIX[target]}"
    # an fp32 program holds every weight in fp32 at least once: 4 bytes per parameter
    assert artifact.stat().st_size < 4 * parameter_count(model_dir)
    pkg = find_package(name)
    assert pkg.model.options["dynamic-int8"].quantization == "int8-channel+dyn-act"
    record = json.loads((home / "packages" / name / "build.json").read_text())
    assert record["recipes"][0]["name"] == "dynamic-int8"
    assert record["recipes"][0][target] == option["quantizer"] != ""
    assert record["options"]["dynamic-int8"]["parity"] == parity
    (art,) = list_artifacts(name)
    assert art.metadata["recipe"] == "dynamic-int8" and art.metadata["parity"] == parity
    return artifact


def _serves(artifact: Path, target: str, name: str) -> None:
    """The edge worker's adapter launches the quantized program as it does the fp32 one, and
    its OpenAI route returns what famous's pipeline over the program generates."""
    from fastapi.testclient import TestClient

    from famous.genai.export.programs import signature_pipeline
    from famous.genai.sampling import SamplingParams
    from famous.manifests.loader import find_package
    from famous.runtimes import get_runtime
    from famous.runtimes.base import LaunchSpec
    from famous.runtimes.workers.native import app_for

    engine = find_package(name).engines[f"{target}-cpu"]
    adapter = get_runtime(target, engine.configuration)
    argv = adapter.command(LaunchSpec(name=name, model_path=artifact), 9999)
    assert argv[1:3] == ["-m", "famous.runtimes.workers.edge"] and str(artifact) in argv
    pipe = signature_pipeline(artifact, artifact.parent)
    client = TestClient(app_for(pipe, "edge"))
    body = {"model": "edge", "prompt": "The quick brown", "max_tokens": 8, "temperature": 0}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    want = pipe.generate("The quick brown", SamplingParams(max_new_tokens=8)).text
    assert r.json()["choices"][0]["text"] == want != ""


@pytest.mark.slow  # ExecuTorch's lowering of the quantized linears: minutes on 2 shared cores
def test_executorch_dynamic_int8(tiny_llama: Path, famous_home: Path, eager_dynamic_int8) -> None:
    artifact = _check_int8_package(
        "executorch", "tiny-et8", tiny_llama, famous_home, eager_dynamic_int8
    )
    _serves(artifact, "executorch", "tiny-et8")


@pytest.mark.slow  # litert-torch's conversion and quantizer, in its own venv
def test_litert_dynamic_int8(tiny_llama: Path, famous_home: Path, eager_dynamic_int8) -> None:
    assert _litert_ready() is None  # the suite's conftest provisions the converter venv
    artifact = _check_int8_package(
        "litert", "tiny-lite8", tiny_llama, famous_home, eager_dynamic_int8
    )
    from ai_edge_litert.interpreter import Interpreter

    # litert-torch stored the linears' weights as int8 tensors
    kinds = {str(t["dtype"]) for t in Interpreter(str(artifact)).get_tensor_details()}
    assert "<class 'numpy.int8'>" in kinds, kinds
    _serves(artifact, "litert", "tiny-lite8")


def test_bad_edge_recipe_lists_the_valid_ones(tiny_llama: Path, famous_home: Path) -> None:
    for target in ("executorch", "litert"):
        r = _build(tiny_llama, target, "x", "int9")
        assert r.exit_code == 2, r.output
        assert "unknown recipe 'int9'" in r.output and "fp32, dynamic-int8" in r.output
        r = _build(tiny_llama, target, "x", "int8")  # famous's weight-only int8: not XNNPACK's
        assert r.exit_code == 2 and "dynamic-int8" in r.output, r.output
    packages = famous_home / "packages"
    assert not packages.exists() or not any(packages.iterdir())
