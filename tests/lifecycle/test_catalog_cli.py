"""The catalog commands (list, du, rm, import, prune, search) and the light control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import gguf_repo, tiny_gguf
from hub_server import HubServer
from typer.testing import CliRunner

from famous.cli.main import app
from famous.hub.formats import parse_gguf_header
from famous.hub.names import parse_reference, safe_relpath
from famous.hub.pull import import_local, pull
from famous.store.artifacts import ArtifactInUse, installed_artifacts, list_artifacts
from famous.store.db import connect, transaction

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_list_and_du_without_catalog_create_nothing(famous_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    code = (
        "import sys, runpy; sys.argv=['famous','list','--format','json'];"
        "from famous.cli.main import app\n"
        "try:\n app()\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    du = CliRunner().invoke(app, ["du", "--format", "json"])
    assert du.exit_code == 0 and json.loads(du.stdout)["total_bytes"] == 0
    assert not famous_home.exists()


def test_pull_list_show_rm(hub: HubServer, cpu_report, monkeypatch) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    import famous.hardware.detector as detector

    monkeypatch.setattr(detector, "detect", lambda *a, **k: cpu_report)
    runner = CliRunner()
    res = runner.invoke(app, ["pull", "org/Tiny-GGUF", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "q4_k_m" in res.stdout
    listed = json.loads(runner.invoke(app, ["list", "--format", "json"]).stdout)
    assert [(a["model"], a["engine"], a["variant"]) for a in listed] == [
        ("org/Tiny-GGUF", "cpu", "q4_k_m")
    ]
    files = installed_artifacts("org/Tiny-GGUF")[0].files
    assert files[0].sha256 and files[0].size_bytes > 0
    shown = runner.invoke(app, ["show-model", "org/Tiny-GGUF"])
    assert shown.exit_code == 0 and f"sha256:{files[0].sha256}" in shown.stdout
    path = Path(listed[0]["path"])
    # a running deployment keeps its files
    conn = connect()
    with transaction(conn):
        conn.execute(
            "INSERT INTO deployments (name, artifact_id, engine, runtime, status, updated_at)"
            " VALUES ('tiny', ?, 'cpu', 'llamacpp', 'ready', 'now')",
            (listed[0]["id"],),
        )
    conn.close()
    refused = runner.invoke(app, ["rm", "org/Tiny-GGUF"])
    assert refused.exit_code == 1 and "stop" in refused.stderr
    with pytest.raises(ArtifactInUse):
        from famous.store.artifacts import remove_artifacts

        remove_artifacts("org/Tiny-GGUF")
    forced = runner.invoke(app, ["rm", "org/Tiny-GGUF", "--force"])
    assert forced.exit_code == 0, forced.output
    assert not path.exists() and list_artifacts() == []
    missing = runner.invoke(app, ["rm", "org/Tiny-GGUF"])
    assert missing.exit_code == 4


def test_cli_errors_say_what_to_do(hub: HubServer, monkeypatch, cpu_report) -> None:
    import famous.hardware.detector as detector

    monkeypatch.setattr(detector, "detect", lambda *a, **k: cpu_report)
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    res = CliRunner().invoke(app, ["pull", "org/Tiny-GUFF", "--quiet"])
    assert res.exit_code == 4
    assert "org/Tiny-GGUF" in res.stderr
    res = CliRunner().invoke(app, ["pull", "org/Tiny-GGUF", "--offline", "--quiet"])
    assert res.exit_code == 4 and "offline" in res.stderr


def test_import_without_and_with_copy(tmp_path: Path, famous_home: Path, cpu_report) -> None:
    model = tmp_path / "mine-Q4_K_M.gguf"
    model.write_bytes(tiny_gguf("Q4_K_M"))
    result = import_local(model, report=cpu_report)
    assert result.artifact.path == str(model) and not result.artifact.owned
    assert result.artifact.metadata["gguf"]["block_count"] == 2
    copied = import_local(model, name="mine-copy", copy=True, report=cpu_report)
    assert Path(copied.artifact.path).is_relative_to(famous_home)
    CliRunner().invoke(app, ["rm", "mine-Q4_K_M"])
    assert model.exists()  # an imported file is never deleted
    CliRunner().invoke(app, ["rm", "mine-copy"])
    assert not Path(copied.artifact.path).exists()


def test_set_for_an_imported_model_reaches_its_engine(
    tmp_path: Path, famous_home: Path, cpu_report
) -> None:
    """``famous set KEY=VALUE --model NAME`` takes an imported model's runtime keys (it has
    no package) and the gateway launches it with them."""
    from famous.serve.models import ModelRegistry

    model = tmp_path / "mine-Q4_K_M.gguf"
    model.write_bytes(tiny_gguf("Q4_K_M"))
    import_local(model, name="mine", report=cpu_report)
    runner = CliRunner()
    result = runner.invoke(app, ["set", "--model", "mine", "ctx-size=1024"])
    assert result.exit_code == 0, result.output
    got = runner.invoke(app, ["get", "ctx-size", "--model", "mine", "--format", "json"])
    assert json.loads(got.stdout) == {"key": "ctx-size", "value": 1024, "layer": "user"}
    assert runner.invoke(app, ["set", "--model", "mine", "bogus=1"]).exit_code == 4
    assert runner.invoke(app, ["set", "--model", "nothing-here", "ctx-size=1"]).exit_code == 4
    spec = ModelRegistry().get("mine")
    assert spec is not None and spec.configuration["ctx-size"] == 1024
    # without --model: an engine key for every model whose engine understands it
    assert runner.invoke(app, ["set", "threads=3"]).exit_code == 0
    assert ModelRegistry().get("mine").configuration["threads"] == 3
    assert runner.invoke(app, ["set", "no-such-key=1"]).exit_code == 4


def test_prune_keeps_the_chosen_engine_and_drops_the_rest(
    hub: HubServer, cpu_report, monkeypatch
) -> None:
    import famous.hardware.detector as detector

    monkeypatch.setattr(detector, "detect", lambda *a, **k: cpu_report)
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    chosen = pull("org/Tiny-GGUF", report=cpu_report)
    time.sleep(1.1)  # the user's extra variant is the newest artifact, to the second
    extra = pull("org/Tiny-GGUF", variant="q8_0", report=cpu_report)
    # and an abandoned partial download
    orphan = Path(chosen.artifact.root).parent / "f16" / ".famous" / "partial"
    orphan.mkdir(parents=True)
    (orphan / "x.part").write_bytes(b"0" * 1000)
    dry = CliRunner().invoke(app, ["prune", "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.stdout
    assert len(list_artifacts()) == 2
    res = CliRunner().invoke(app, ["prune"])
    assert res.exit_code == 0, res.output
    assert [a.variant for a in list_artifacts()] == ["q4_k_m"]
    assert not Path(extra.artifact.path).exists() and not orphan.exists()


def test_search(hub: HubServer) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo(), tags=["gguf"], downloads=10)
    hub.add_repo("org/tiny-llama", {"model.safetensors": b"x" * 10, "config.json": b"{}"})
    res = CliRunner().invoke(app, ["search", "tiny", "--format", "json"])
    hits = json.loads(res.stdout)
    assert [h["repo_id"] for h in hits] == ["org/Tiny-GGUF", "org/tiny-llama"]
    assert hits[0]["formats"] == ["gguf"] and hits[1]["formats"] == ["safetensors"]
    only = CliRunner().invoke(app, ["search", "tiny", "--format", "gguf"])
    assert "org/Tiny-GGUF" in only.stdout and "tiny-llama" not in only.stdout


def test_names_and_headers() -> None:
    assert parse_reference("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M").variant == "Q4_K_M"
    assert parse_reference("Qwen/Qwen2.5-0.5B-Instruct").kind == "repo"
    assert parse_reference("qwen2.5-0.5b-instruct").kind == "package"
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", ".famous/verified.json", ""):
        with pytest.raises(Exception, match="refusing"):
            safe_relpath(bad)
    header = parse_gguf_header(tiny_gguf("Q8_0")[:4096])
    assert (header.architecture, header.quantization, header.head_count_kv) == ("llama", "Q8_0", 2)
