"""GGUF export of Gemma 2, Gemma 3 (text) and Phi-3, run by llama.cpp itself (llama-cpp-python,
the library famous's llama-server is built from), and read back as a famous source.

Each model is a two-layer one of the family (the tied Gemmas trained a few steps on the test
corpus: at random they repeat their last token), the Gemmas with a sliding window of 4
tokens under prompts of 10-24, Phi-3 with LongRoPE: llama.cpp's greedy text equals
transformers' and famous's eager model's, and its logits stay close to transformers' while
the same weights without the window (without LongRoPE) are far from them — a GGUF that
dropped either would fail here. Phi-3's own sliding window llama.cpp ignores: the GGUF
declares it as its context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
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
    tensors,
    with_config,
)

from famous.genai.export.gguf import export_gguf
from famous.genai.models import fake_hf_config

ARCH = {"gemma2": "gemma2", "gemma3_text": "gemma3", "phi3": "phi3"}
WINDOW = 4
# Phi-3 128k-style LongRoPE over the fake model's 8 rotary dimensions (4 frequencies)
LONGROPE = {"rope_type": "longrope", "short_factor": [1.0, 1.5, 2.5, 4.0]}
LONGROPE["long_factor"] = [2.0, 3.0, 5.0, 8.0]
CONFIG: dict[str, dict] = {
    "gemma2": {"sliding_window": WINDOW},
    "gemma3_text": {  # a local base other than llama.cpp's default 10000
        "sliding_window": WINDOW,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        },
    },
    # llama.cpp's phi3 disables sliding windows: this one has none
    "phi3": {
        "sliding_window": None,
        "max_position_embeddings": 2048,
        "original_max_position_embeddings": 512,
        "rope_scaling": LONGROPE,
    },
}
# what llama.cpp reads beyond the window (the fake configs' values)
KEYS = {
    "gemma2": {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
    "gemma3_text": {"rope.freq_base_swa": 100, "rope.freq_base": 1e6, "rope.scaling.factor": 8},
}
NEW = 12
TIED = ("gemma2", "gemma3_text")


def corpus_prompt(model_dir: Path, n: int = 10) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return tok.encode(CORPUS[2]).ids[:n]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """``exported(kind)``: a two-layer model of the family and famous's f32 GGUF."""

    def make(kind: str, model: Path) -> None:
        save_random_model(kind, model, **CONFIG[kind])
        if kind in TIED:  # a random tied model repeats its last token: train it a little
            memorize_corpus(model, steps=10)

    return family_exports(tmp_path_factory, make, ARCH)


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
    for key, value in KEYS[kind].items():
        assert meta[f"{arch}.{key}"] == pytest.approx(value), key
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
    # read back, the folded weights with llama.cpp's scale are the same model
    torch.testing.assert_close(famous_logits(path, ids), famous_logits(model, ids))


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


def test_phi3_fused_tensors_and_longrope_are_where_llama_cpp_reads_them(exported, tmp_path) -> None:
    """q/k/v and gate/up stay fused (attn_qkv, ffn_up with gate first, as llama.cpp's
    SwiGLU splits it); the LongRoPE factors are tensors and their cos/sin gain a key. The
    short factors matter: the same weights without LongRoPE answer far from llama.cpp."""
    import math

    from safetensors.numpy import load_file

    model, gguf_path = exported("phi3")
    ckpt = load_file(model / "model.safetensors")
    got = tensors(gguf_path)
    for gguf_name, hub in (("attn_qkv", "self_attn.qkv_proj"), ("ffn_up", "mlp.gate_up_proj")):
        want = ckpt[f"model.layers.1.{hub}.weight"]
        np.testing.assert_array_equal(
            np.asarray(got[f"blk.1.{gguf_name}.weight"].data).reshape(want.shape), want
        )
    for kind in ("long", "short"):
        factors = np.asarray(got[f"rope_factors_{kind}.weight"].data)
        np.testing.assert_array_equal(factors, LONGROPE[f"{kind}_factor"])
    meta = fields(gguf_path)
    assert meta["phi3.rope.scaling.attn_factor"] == pytest.approx(
        math.sqrt(1 + math.log(2048 / 512) / math.log(512))
    )
    assert meta["phi3.rope.scaling.original_context_length"] == 512
    assert meta["phi3.rope.dimension_count"] == 8  # partial_rotary_factor 0.5 of 16
    ids = corpus_prompt(model)
    plain = with_config(model, tmp_path / "plain", rope_parameters={"rope_theta": 10000.0})
    past = np.abs(llama_logits(gguf_path, ids) - hf_logits(plain, ids)).max()
    assert past > 1.0, f"LongRoPE changes the logits by only {past}"


def test_a_phi3_window_llama_cpp_would_ignore_becomes_the_declared_context(tmp_path) -> None:
    """llama.cpp's phi3 reads a sliding window and then disables it (full attention): the
    GGUF declares the window as its context, within which llama.cpp is the windowed model."""
    window = fake_hf_config("phi3")["sliding_window"]
    model = save_random_model("phi3", tmp_path / "model")
    result = export_gguf(model, tmp_path / "m.gguf", "f32")
    assert fields(result.path)["phi3.context_length"] == window
    assert any(f"sliding_window {window}" in w and "'phi3'" in w for w in result.warnings)
    ids = prompt_ids(min(window, 24))
    assert np.abs(llama_logits(result.path, ids) - hf_logits(model, ids)).max() < 0.03


# ------------------------------------------------------------------------------ as a source


def famous_logits(source: Path, ids: list[int]) -> torch.Tensor:
    from famous.genai.loader import load_model

    model = load_model(source, torch.float32, max_seq_len=64)
    n = len(ids)
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids]), torch.arange(n), model.init_cache(1), end=n)
    return logits[0]


@pytest.mark.parametrize("kind", list(ARCH))
def test_a_gguf_famous_wrote_loads_back_as_the_eager_model(kind: str, exported, tmp_path) -> None:
    """``load_model(x.gguf)``: windows, caps, local RoPE, fused tensors and LongRoPE all come
    back from the metadata (f32: the same logits; f16: within its rounding), and the Hub
    folder ``famous build`` / ``quantize`` make of it is the one transformers reads."""
    from famous.genai.gguf_source.hub_folder import write_hub_folder

    model, gguf_path = exported(kind)
    ids = prompt_ids(24)
    want = famous_logits(model, ids)
    torch.testing.assert_close(famous_logits(gguf_path, ids), want, rtol=0, atol=1e-5)
    f16 = export_gguf(model, tmp_path / "m.f16.gguf", "f16").path
    assert (famous_logits(f16, ids) - want).abs().max() < 0.05
    folder = write_hub_folder(gguf_path, tmp_path / "hub")
    np.testing.assert_allclose(hf_logits(folder, ids), hf_logits(model, ids), atol=1e-4)


def test_verify_takes_a_gemma2_gguf_and_says_when_transformers_reads_it_otherwise(
    exported, tmp_path
) -> None:
    """``famous verify x.gguf`` checks famous against transformers' own GGUF loader, which
    reads Gemma 2's window and caps but assumes query_pre_attn_scalar 256: at head_dim 256
    (the real Gemma 2 2B / 9B) it agrees; at the fake model's 16 verify names the scale."""
    from famous.genai.errors import GenAIError
    from famous.genai.verify import verify

    model = save_random_model(
        "gemma2", tmp_path / "wide", head_dim=256, query_pre_attn_scalar=256, sliding_window=4
    )
    report = verify(export_gguf(model, tmp_path / "wide.gguf", "f32").path, "fp32", 12, 6)
    assert report.ok and report.greedy_match, report
    _, narrow = exported("gemma2")
    with pytest.raises(GenAIError, match=r"softmax_scale 0\.0625 where the GGUF holds 0\.25"):
        verify(narrow, "fp32", 12, 6)
