"""``famous profile`` and ``famous show-graph``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from export_helpers import load
from typer.testing import CliRunner

from famous.cli.main import app

runner = CliRunner()


def test_profile_eager_and_an_artifact(tiny_llama: Path, tmp_path: Path) -> None:
    from famous.genai.export.signatures import export_signatures

    pt2 = export_signatures(load(tiny_llama, 64), (8,)).save(tmp_path / "tiny.pt2")
    r = runner.invoke(
        app,
        [
            "profile",
            str(tiny_llama),
            "--prompt-tokens",
            "12",
            "--new-tokens",
            "4",
            "--artifact",
            str(pt2),
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    eager, exported = json.loads(r.stdout)
    assert eager["target"] == "eager" and exported["target"] == "torch-export"
    for res in (eager, exported):
        assert res["prefill_tok_s"] > 0 and res["decode_tok_s"] > 0 and res["peak_rss_mb"] > 0
    layers = {t["name"] for t in eager["layers"]}
    assert {"embed", "layers.0", "layers.1", "norm"} <= layers
    assert any(t["name"] == "aten::mm" or "linear" in t["name"] for t in eager["op_kinds"])
    calls = {t["name"]: t["calls"] for t in exported["layers"]}
    assert calls == {"prefill_8": 2, "decode": 4}  # 12 tokens = 8 + padded 8
    r = runner.invoke(
        app, ["profile", str(tiny_llama), "--prompt-tokens", "8", "--new-tokens", "2"]
    )
    assert r.exit_code == 0 and "time per layer" in r.output and "tok/s" in r.output


def test_profile_unknown_model(tmp_path: Path) -> None:
    r = runner.invoke(app, ["profile", str(tmp_path / "nope")])
    assert r.exit_code == 4 and "not a model folder" in r.output


def test_show_graph_tree_pt2_and_html(tiny_qwen2: Path, tmp_path: Path) -> None:
    pt2, page = tmp_path / "g.pt2", tmp_path / "g.html"
    r = runner.invoke(
        app,
        ["show-graph", str(tiny_qwen2), "--pt2", str(pt2), "--html", str(page), "--quant", "int8"],
    )
    assert r.exit_code == 0, r.output
    assert "QuantLinear" in r.output and "int8-channel" in r.output
    assert "famous.sdpa.default" in r.output
    import famous.genai.ops  # noqa: F401  (the composite ops must be registered to load)

    ep = torch.export.load(str(pt2))
    targets = {str(n.target) for n in ep.graph.nodes}
    assert {"famous.sdpa.default", "famous.rms_norm.default"} <= targets
    text = page.read_text()
    assert "famous.kv_cache_update.default" in text and "<details" in text
    assert 'src="http' not in text and 'href="http' not in text  # self-contained
    r = runner.invoke(app, ["show-graph", str(tiny_qwen2), "--html", str(page)])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(app, ["show-graph", str(tiny_qwen2), "--format", "json", "--depth", "1"])
    data = json.loads(r.stdout)
    root = data["modules"][0]
    n_params = sum(p.numel() for p in load(tiny_qwen2).parameters())
    assert root["params"] == n_params and root["dtypes"] == ["float32"]
