"""GGUF export of Gemma 2, Gemma 3 (text) and Phi-3, run by llama.cpp itself (llama-cpp-python,
the library famous's llama-server is built from), and read back as a famous source.

Each model is a two-layer one of the family, trained a few steps on the test corpus (so its
greedy tokens do not hinge on near-ties), with a sliding window of 4 tokens under prompts of
10-24: llama.cpp's greedy text equals transformers' and famous's eager model's, and its
logits stay close to transformers' windowed ones while a full-attention run of the same
weights is far from them — dropping the window from the GGUF would fail here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_helpers import CORPUS, prompt_ids
from gguf_helpers import (
    assert_export_refused,
    family_exports,
    famous_greedy,
    fields,
    hf_greedy,
    hf_logits,
    kl,
    llama_greedy,
    llama_logits,
    memorize_corpus,
    save_random_model,
)

from famous.genai.export.gguf import export_gguf

ARCH = {"gemma2": "gemma2", "gemma3_text": "gemma3"}
WINDOW = 4
CONFIG: dict[str, dict] = {
    "gemma2": {"sliding_window": WINDOW},
    "gemma3_text": {"sliding_window": WINDOW},
}
NEW = 12


def corpus_prompt(model_dir: Path, n: int = 10) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return tok.encode(CORPUS[2]).ids[:n]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """``exported(kind)``: a trained two-layer model of the family and famous's f32 GGUF."""

    def make(kind: str, model: Path) -> None:
        memorize_corpus(save_random_model(kind, model, **CONFIG[kind]))

    return family_exports(tmp_path_factory, make, ARCH)


def with_config(model: Path, out: Path, **changes: object) -> Path:
    """A copy of the model folder (no GGUF) with ``changes`` made to its config.json."""
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("*.gguf"))
    conf = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**conf, **changes}))
    return out


@pytest.mark.parametrize("kind", list(ARCH))
def test_llama_cpp_greedy_text_matches_famous_and_transformers(kind: str, exported) -> None:
    model, gguf_path = exported(kind)
    ids = corpus_prompt(model)
    want = famous_greedy(model, ids, NEW)
    assert len(set(want)) > 3, f"{kind}: a model that repeats itself proves little"
    assert llama_greedy(gguf_path, ids, NEW) == want
    assert hf_greedy(model, ids, NEW) == want
    # llama.cpp keeps its KV cache in f16: close, not equal
    assert kl(hf_logits(model, ids), llama_logits(gguf_path, ids)) < 1e-4


@pytest.mark.parametrize("kind", ["gemma2", "gemma3_text"])
def test_the_sliding_window_is_what_llama_cpp_runs(kind: str, exported, tmp_path) -> None:
    model, gguf_path = exported(kind)
    meta = fields(gguf_path)
    arch = ARCH[kind]
    assert meta[f"{arch}.attention.sliding_window"] == WINDOW
    assert meta[f"{arch}.attention.sliding_window_pattern"] == [True, False]
    ids = prompt_ids(24)
    got = llama_logits(gguf_path, ids)
    windowed = hf_logits(model, ids)
    no_window = with_config(model, tmp_path / "full", sliding_window=512)  # the context
    full = hf_logits(no_window, ids)
    assert np.abs(got - windowed).max() < 0.05
    past = np.abs(got - full)[WINDOW:].max()
    assert past > 1.0, f"{kind}: the window changes the logits by only {past}"


@pytest.mark.parametrize("kind", ["gemma2", "gemma3_text"])
def test_query_pre_attn_scalar_is_folded_into_the_weights(kind: str, tmp_path) -> None:
    """llama.cpp scales Gemma's queries by head_dim ** -0.5 whatever the config says; a
    query_pre_attn_scalar of 64 (head_dim 16) is folded into the query weights (Gemma 3:
    its q norm), so llama.cpp computes the checkpoint's scores."""
    model = save_random_model(kind, tmp_path / "model", query_pre_attn_scalar=64)
    path = export_gguf(model, tmp_path / "m.gguf", "f32").path
    ids = prompt_ids(12)
    want = hf_logits(model, ids)
    assert kl(want, llama_logits(path, ids)) < 1e-4
    plain = with_config(model, tmp_path / "plain", query_pre_attn_scalar=16)
    assert kl(want, hf_logits(plain, ids)) > 1e-2, "the scalar should matter here"


@pytest.mark.parametrize(
    ("kind", "config", "match"),
    [
        ("gemma2", {"attn_logit_softcapping": None}, "always soft-caps both"),
        ("gemma2", {"tie_word_embeddings": False}, "separate lm_head"),
        ("gemma3_text", {"attn_logit_softcapping": 50.0}, "never soft-caps attention"),
        ("gemma2", {"hidden_activation": "gelu"}, "gelu_pytorch_tanh"),
    ],
)
def test_what_llama_cpp_would_run_differently_is_refused(kind, config, match, tmp_path) -> None:
    model = save_random_model(kind, tmp_path / "model", tokenizer=False, **config)
    assert_export_refused(model, match)
