"""``famous build --target executorch|litert``: a package famous serves (engine manifest,
catalog rows, the runtime adapter), whose artifact matches the eager model; and builds that
must fail leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from test_edge_targets import _litert_ready, check_artifact
from typer.testing import CliRunner

from famous.cli.main import app

runner = CliRunner()
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _build(model_dir: Path, target: str, name: str, *extra: str):
    return runner.invoke(
        app,
        [
            "build",
            str(model_dir),
            "--target",
            target,
            "--prefill",
            "8",
            "--prefill",
            "16",
            "--max-seq-len",
            "64",
            "--name",
            name,
            "--format",
            "json",
            *extra,
        ],
    )


def _check_package(name: str, target: str, model_dir: Path, home: Path) -> Path:
    from famous.manifests.loader import find_package
    from famous.runtimes import get_runtime
    from famous.runtimes.base import LaunchSpec
    from famous.store.artifacts import check_artifact as check_catalog
    from famous.store.artifacts import list_artifacts

    pkg = find_package(name)
    engine = pkg.engines[f"{target}-cpu"]
    assert engine.runtime == target
    suffix = {"executorch": "pte", "litert": "tflite"}[target]
    artifact = home / "packages" / name / "artifacts" / f"{name}-fp32.{suffix}"
    assert pkg.model.options["fp32"].format == suffix
    assert pkg.model.options["fp32"].size == artifact.stat().st_size
    assert pkg.model.shape.context == 64
    arts = list_artifacts(name, with_files=True)
    assert len(arts) == 1 and not check_catalog(arts[0], deep=True)
    files = {f.relpath for f in arts[0].files}
    assert {artifact.name, "tokenizer.json", f"{name}-fp32.signatures.json"} <= files
    assert not list((home / "packages").glob(".build-*"))
    r = runner.invoke(app, ["engines", name])
    assert r.exit_code == 0 and f"{target}-cpu" in r.output, r.output
    adapter = get_runtime(target, engine.configuration)
    adapter.check_installed()
    argv = adapter.command(LaunchSpec(name=name, model_path=artifact), 9999)
    assert argv[1:3] == ["-m", "famous.runtimes.workers.edge"] and str(artifact) in argv
    assert not adapter.unknown_keys(engine.configuration)
    check_artifact(artifact, model_dir)
    return artifact


def _serve_matches_eager(artifact: Path, model_dir: Path) -> None:
    """The OpenAI routes over the artifact give the eager model's greedy completion."""
    from export_helpers import load
    from fastapi.testclient import TestClient

    from famous.genai.export.programs import signature_pipeline
    from famous.genai.pipeline import Pipeline
    from famous.genai.sampling import SamplingParams
    from famous.genai.tokenizer import Tokenizer
    from famous.runtimes.workers.native import app_for

    client = TestClient(app_for(signature_pipeline(artifact, artifact.parent), "edge"))
    r = client.post(
        "/v1/completions",
        json={"model": "edge", "prompt": "The quick brown", "max_tokens": 8, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    eager = Pipeline(load(model_dir), Tokenizer(model_dir))
    want = eager.generate("The quick brown", SamplingParams(max_new_tokens=8)).text
    assert r.json()["choices"][0]["text"] == want
    messages = [{"role": "user", "content": "Hello world!"}]
    r = client.post(
        "/v1/chat/completions",
        json={"model": "edge", "messages": messages, "max_tokens": 8, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    want = eager.chat(messages, SamplingParams(max_new_tokens=8)).text
    assert r.json()["choices"][0]["message"]["content"] == want


@pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed (extra 'executorch': pip install executorch)",
)
def test_build_executorch_package(tiny_llama: Path, famous_home: Path, tmp_path: Path) -> None:
    model_dir = _template_in_own_file(tiny_llama, tmp_path / "model")
    r = _build(model_dir, "executorch", "tiny-et")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["engine"] == "executorch-cpu" and data["options"][0]["name"] == "fp32"
    artifact = _check_package("tiny-et", "executorch", model_dir, famous_home)
    assert (artifact.parent / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    _serve_matches_eager(artifact, model_dir)


def _template_in_own_file(model_dir: Path, out: Path) -> Path:
    """A copy of ``model_dir`` laid out as transformers 5 saves it: the chat template in
    ``chat_template.jinja``, none in ``tokenizer_config.json``."""
    shutil.copytree(model_dir, out)
    conf = json.loads((out / "tokenizer_config.json").read_text())
    assert "chat_template" not in conf
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return out


def test_build_litert_package(tiny_llama: Path, famous_home: Path) -> None:
    reason = _litert_ready()
    if reason:
        pytest.skip(reason)
    r = _build(tiny_llama, "litert", "tiny-lite")
    assert r.exit_code == 0, r.output
    _check_package("tiny-lite", "litert", tiny_llama, famous_home)


def test_edge_build_refusals(tiny_llama: Path, famous_home: Path) -> None:
    r = _build(tiny_llama, "executorch", "x", "--quant", "int8")
    assert r.exit_code == 2 and "fp32" in r.output, r.output
    r = _build(tiny_llama, "tensorrt", "x")
    assert r.exit_code == 2 and "executorch" in r.output and "litert" in r.output
    r = runner.invoke(
        app,
        ["build", str(tiny_llama), "--target", "litert", "--prefill", "128", "--max-seq-len", "64"],
    )
    assert r.exit_code in (2, 5), r.output  # bad length (or no converter here)
    assert not (famous_home / "packages").exists() or not any((famous_home / "packages").iterdir())


def test_failed_litert_build_leaves_nothing(
    tiny_llama: Path, famous_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from famous.genai.export import litert

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'litert-torch exploded' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(litert, "converter_python", lambda: str(broken))
    r = _build(tiny_llama, "litert", "broken")
    assert r.exit_code == 1 and "litert-torch exploded" in r.output, r.output
    from famous.store.artifacts import list_artifacts

    assert not list_artifacts("broken")
    packages = famous_home / "packages"
    assert not packages.exists() or not any(packages.iterdir())
