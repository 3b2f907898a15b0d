"""``famous build --target executorch|litert --quant dynamic-int8 --quant dynamic-int4``:
int8 and int4 programs run by their own runtimes, served like the fp32 ones, with the recipe
and the parity (KL / top-1 against the fp32 eager model) recorded in the package.

Thresholds are relative to famous's eager recipe of the same weights, measured on the same
teacher-forced positions. ``dynamic-int8`` against famous's eager ``dynamic-int8`` (int8
weights per channel, int8 activations per token): on this tiny random model KL ≈ 3.6e-3,
top-1 ≈ 94 %; the XNNPACK programs ≈ 4-5e-3 and 88-92 %. ``dynamic-int4`` (int4 groups of
32, int8 activations) has no eager twin in famous (its int4 is weight-only), so its nearest is
the reference: ``int4`` (int4 blocks of 32, embedding and LM head int8; KL ≈ 0.35, top-1 32 %)
for ExecuTorch, which keeps those two int8 (its program: 0.37, 30 %), and ``q4_0`` (int4
blocks of 32 everywhere; 0.59, 26 %) for LiteRT, whose recipe makes them int4 too (0.61,
24 %). A program within twice famous's eager KL and 10 points of its top-1 quantizes like it;
a wrong scale or a dropped layer lands far beyond.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from test_edge_targets import _litert_ready
from typer.testing import CliRunner

from famous.cli.main import app

runner = CliRunner()
SUFFIX = {"executorch": "pte", "litert": "tflite"}
LABEL = {"dynamic-int8": "int8-channel+dyn-act", "dynamic-int4": "int4-b32+dyn-act"}
# famous's eager recipe each edge recipe is held to, per target (see the module docstring)
EAGER = {
    ("executorch", "dynamic-int8"): "dynamic-int8",
    ("litert", "dynamic-int8"): "dynamic-int8",
    ("executorch", "dynamic-int4"): "int4",
    ("litert", "dynamic-int4"): "q4_0",
}


def _build(model_dir: Path, target: str, name: str, *recipes: str):
    quant = [a for r in recipes for a in ("--quant", r)]
    args = ["build", str(model_dir), "--target", target, "--prefill", "8"]
    args += ["--max-seq-len", "32", "--name", name, "--format", "json", *quant]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def eager_parity(tiny_llama: Path):
    """famous's own eager recipe (by preset name) on the positions the build scores."""
    from famous.genai.edge_quality import model_parity
    from famous.genai.quality import load_reference
    from famous.genai.quantize.modules import apply_recipe
    from famous.genai.quantize.recipe import get_recipe

    @cache
    def parity(preset: str):
        model = load_reference(tiny_llama, 32)
        apply_recipe(model, get_recipe(preset))
        return model_parity(model, tiny_llama, 32)

    return parity


def _check_packages(target: str, name: str, model_dir: Path, home: Path, eager) -> dict:
    """One build of both recipes: its JSON, model.yaml, build.json and catalog rows record
    each recipe and its parity; each program is smaller than the fp32 weights, the int4 one
    smaller than the int8 one, and each quantizes like famous's eager recipe of its weights.
    Returns the artifact of each recipe."""
    from famous.genai.export.safetensors_stream import parameter_count
    from famous.manifests.loader import find_package
    from famous.store.artifacts import list_artifacts

    r = _build(model_dir, target, name, "dynamic-int8", "dynamic-int4")
    assert r.exit_code == 0, r.output
    record = json.loads((home / "packages" / name / "build.json").read_text())
    pkg = find_package(name)
    arts = {a.metadata["recipe"]: a for a in list_artifacts(name)}
    artifacts = {}
    for i, option in enumerate(json.loads(r.stdout)["options"]):
        recipe = option["name"]
        ref = eager(EAGER[target, recipe])
        assert option["recipe"] == recipe and option["quantization"] == LABEL[recipe]
        parity = option["parity"]
        assert parity["reference"] == "famous fp32 eager" and parity["positions"] == 50
        assert 1e-6 < parity["kl"] < 2 * ref.kl, (recipe, parity, ref)  # quantized, like famous's
        assert parity["top1"] >= ref.top1 - 0.10, (recipe, parity, ref)
        assert parity["decode_tok_s"] > 0
        file = f"{name}-{recipe}.{SUFFIX[target]}"
        artifacts[recipe] = home / "packages" / name / "artifacts" / file
        assert pkg.model.options[recipe].quantization == LABEL[recipe]
        assert record["recipes"][i]["name"] == recipe
        assert record["recipes"][i][target] == option["quantizer"] != ""
        assert record["options"][recipe]["parity"] == parity
        assert arts[recipe].metadata["parity"] == parity
    assert set(artifacts) == {"dynamic-int8", "dynamic-int4"}
    size = {k: p.stat().st_size for k, p in artifacts.items()}
    # an fp32 program holds every weight in fp32 at least once: 4 bytes per parameter
    assert size["dynamic-int8"] < 4 * parameter_count(model_dir), size
    assert size["dynamic-int4"] < size["dynamic-int8"], size
    return artifacts


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


def _pte_constants(artifact: Path) -> set[tuple[str, tuple[int, ...]]]:
    """(dtype, shape) of every constant the program keeps outside its XNNPACK delegates,
    read with ExecuTorch's own deserializer (the methods share them)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(artifact.read_bytes()).program
    found = {}
    for plan in program.execution_plan:
        for value in plan.values:
            t = value.val
            if getattr(t, "scalar_type", None) is not None and t.data_buffer_idx > 0:
                found[t.data_buffer_idx] = (t.scalar_type.name, tuple(t.sizes))
    return set(found.values())


@pytest.mark.slow  # ExecuTorch's lowering of the quantized linears: minutes on 2 shared cores
def test_executorch_dynamic_int8_int4(tiny_llama: Path, famous_home: Path, eager_parity) -> None:
    from famous.genai.models import load_config

    artifacts = _check_packages("executorch", "tiny-et", tiny_llama, famous_home, eager_parity)
    cfg = load_config(tiny_llama)
    table = (cfg.vocab_size, cfg.hidden_size)
    for artifact in artifacts.values():
        # the tied embedding is one int8 table (gathered by ExecuTorch's quantized embedding
        # kernel) next to the delegate, which holds the untied int8 LM head: no fp32 copy
        constants = _pte_constants(artifact)
        assert ("CHAR", table) in constants and ("FLOAT", table) not in constants, constants
        _serves(artifact, "executorch", "tiny-et")


@pytest.mark.slow  # litert-torch's conversion and quantizer, in its own venv
def test_litert_dynamic_int8_int4(tiny_llama: Path, famous_home: Path, eager_parity) -> None:
    assert _litert_ready() is None  # the suite's conftest provisions the converter venv
    artifacts = _check_packages("litert", "tiny-lite", tiny_llama, famous_home, eager_parity)
    from ai_edge_litert.interpreter import Interpreter

    for recipe, artifact in artifacts.items():
        # litert-torch stored the weights as int8 tensors, one scale per row; int4 ones are
        # listed as int8 too, with one scale per block of 32 of a row
        weights = [
            t
            for t in Interpreter(str(artifact)).get_tensor_details()
            if len(t["shape"]) == 2 and t["quantization_parameters"]["scales"].size > 1
        ]
        assert weights and all(str(t["dtype"]) == "<class 'numpy.int8'>" for t in weights)
        for t in weights:
            rows, cols = (int(n) for n in t["shape"])
            per_row = t["quantization_parameters"]["scales"].size // rows
            assert per_row == (1 if recipe == "dynamic-int8" else cols // 32), (recipe, t)
        _serves(artifact, "litert", "tiny-lite")


def test_bad_edge_recipe_lists_the_valid_ones(tiny_llama: Path, famous_home: Path) -> None:
    for target in ("executorch", "litert"):
        r = _build(tiny_llama, target, "x", "int9")
        assert r.exit_code == 2, r.output
        assert "unknown recipe 'int9'" in r.output
        assert "fp32, dynamic-int8, dynamic-int4" in r.output
        r = _build(tiny_llama, target, "x", "int8")  # famous's weight-only int8: not XNNPACK's
        assert r.exit_code == 2 and "dynamic-int8" in r.output, r.output
    packages = famous_home / "packages"
    assert not packages.exists() or not any(packages.iterdir())
