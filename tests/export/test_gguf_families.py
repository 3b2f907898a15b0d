"""GGUF export of the mixture-of-experts and newer dense families, run by llama.cpp itself
(llama-cpp-python, the library famous's llama-server is built from): the same greedy tokens
as transformers and as famous's eager model, the logits close, and the parts llama.cpp
needs (stacked expert tensors, expert counts, Granite's multipliers) where it reads them.

What llama.cpp would run differently is refused rather than written: un-renormalized or
partly dense expert routing (qwen3moe renormalizes every block's top-k; qwen2moe never
does) and SmolLM3 NoPE layers other than every 4th (llama.cpp fixes that step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_helpers import prompt_ids
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
    save_random_model,
    tensors,
)
from safetensors.numpy import load_file

from famous.genai.export.gguf import export_gguf
from famous.genai.models import fake_hf_config

# model_type → llama.cpp's architecture (Mixtral is llama.cpp's llama with experts)
ARCH = {
    "qwen3_moe": "qwen3moe",
    "qwen2_moe": "qwen2moe",
    "mixtral": "llama",
    "olmo2": "olmo2",
    "granite": "granite",
    "smollm3": "smollm3",
    "gpt_oss": "gpt-oss",
}
# wider weights where the family's multipliers shrink the logits (Granite divides by 8)
INIT = {"granite": 0.6}
# gpt-oss's own config says YaRN truncate=false, which llama.cpp does not implement (it
# always rounds the ramp's ends): that export warns, and this one uses truncate=true
GPT_OSS_ROPE = {**fake_hf_config("gpt_oss")["rope_parameters"], "truncate": True}
CONFIG = {"gpt_oss": {"rope_parameters": GPT_OSS_ROPE}}
NEW = 12


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """``exported(kind)``: a random model of the family and famous's f32 GGUF of it."""

    def make(kind: str, model: Path) -> None:
        config = {"initializer_range": INIT.get(kind, 0.2), **CONFIG.get(kind, {})}
        save_random_model(kind, model, **config)

    return family_exports(tmp_path_factory, make, ARCH)


@pytest.mark.parametrize("kind", list(ARCH))
def test_llama_cpp_greedy_tokens_match_transformers_and_famous(kind: str, exported) -> None:
    model, gguf_path = exported(kind)
    ids = prompt_ids(8)
    want = hf_greedy(model, ids, NEW)
    assert len(set(want)) > 3, f"{kind}: a random model that repeats itself proves little"
    assert llama_greedy(gguf_path, ids, NEW) == want
    assert famous_greedy(model, ids, NEW) == want
    # llama.cpp keeps its KV cache in f16: close, not equal
    assert kl(hf_logits(model, ids), llama_logits(gguf_path, ids)) < 1e-4


def test_experts_are_stacked_where_llama_cpp_reads_them(exported) -> None:
    model, gguf_path = exported("qwen3_moe")
    ckpt = load_file(model / "model.safetensors")
    got = tensors(gguf_path)
    meta = fields(gguf_path)
    assert meta["qwen3moe.expert_count"] == 8
    assert meta["qwen3moe.expert_used_count"] == 2
    assert meta["qwen3moe.expert_feed_forward_length"] == 32
    for gguf_name, proj in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
        t = got[f"blk.1.ffn_{gguf_name}_exps.weight"]
        want = np.stack([ckpt[f"model.layers.1.mlp.experts.{e}.{proj}.weight"] for e in range(8)])
        np.testing.assert_array_equal(np.asarray(t.data).reshape(want.shape), want)
    router = got["blk.1.ffn_gate_inp.weight"]
    assert router.tensor_type.name == "F32"
    np.testing.assert_array_equal(np.asarray(router.data), ckpt["model.layers.1.mlp.gate.weight"])


def test_qwen2moe_shared_expert_is_where_llama_cpp_reads_it(exported) -> None:
    model, gguf_path = exported("qwen2_moe")
    meta = fields(gguf_path)
    assert meta["qwen2moe.expert_shared_feed_forward_length"] == 96
    assert meta["qwen2moe.expert_feed_forward_length"] == 32
    ckpt, got = load_file(model / "model.safetensors"), tensors(gguf_path)
    gate = got["blk.1.ffn_gate_inp_shexp.weight"]
    assert gate.tensor_type.name == "F32"
    want = ckpt["model.layers.1.mlp.shared_expert_gate.weight"]
    np.testing.assert_array_equal(np.asarray(gate.data).reshape(want.shape), want)
    up = np.asarray(got["blk.1.ffn_up_shexp.weight"].data)
    np.testing.assert_array_equal(up, ckpt["model.layers.1.mlp.shared_expert.up_proj.weight"])


def test_gpt_oss_tensors_and_the_yarn_llama_cpp_cannot_match(exported, tmp_path) -> None:
    """Sinks, split and transposed experts with their biases where llama.cpp reads them;
    the checkpoint's own truncate=false YaRN exports with a warning saying what differs."""
    model, gguf_path = exported("gpt_oss")
    ckpt = load_file(model / "model.safetensors")
    got = tensors(gguf_path)
    fused = ckpt["model.layers.0.mlp.experts.gate_up_proj"]  # [E, in, 2I], interleaved
    gate = np.asarray(got["blk.0.ffn_gate_exps.weight"].data).reshape(4, 32, 64)
    up = np.asarray(got["blk.0.ffn_up_exps.weight"].data).reshape(4, 32, 64)
    np.testing.assert_array_equal(gate, fused[:, :, 0::2].transpose(0, 2, 1))
    np.testing.assert_array_equal(up, fused[:, :, 1::2].transpose(0, 2, 1))
    bias = ckpt["model.layers.0.mlp.experts.gate_up_proj_bias"]
    np.testing.assert_array_equal(np.asarray(got["blk.0.ffn_up_exps.bias"].data), bias[:, 1::2])
    sinks = np.asarray(got["blk.1.attn_sinks.weight"].data)
    np.testing.assert_array_equal(sinks, ckpt["model.layers.1.self_attn.sinks"])
    meta = fields(gguf_path)
    assert meta["gpt-oss.attention.sliding_window"] == 16
    assert meta["gpt-oss.rope.scaling.type"] == "yarn"
    as_released = save_random_model("gpt_oss", tmp_path / "model")
    result = export_gguf(as_released, tmp_path / "m.gguf", "f16")
    assert any("truncate=false" in w for w in result.warnings)


def test_granite_multipliers_are_written_under_llama_cpps_keys(exported) -> None:
    from transformers import AutoConfig

    model, gguf_path = exported("granite")
    hf = AutoConfig.from_pretrained(model)
    meta = fields(gguf_path)
    assert meta["granite.embedding_scale"] == pytest.approx(hf.embedding_multiplier)
    assert meta["granite.residual_scale"] == pytest.approx(hf.residual_multiplier)
    assert meta["granite.attention.scale"] == pytest.approx(hf.attention_multiplier)
    assert meta["granite.logit_scale"] == pytest.approx(hf.logits_scaling)


@pytest.mark.parametrize(
    ("kind", "config", "match"),
    [
        ("qwen3_moe", {"norm_topk_prob": False}, "norm_topk_prob"),
        ("qwen2_moe", {"norm_topk_prob": True}, "never renormalizes"),
        ("qwen3_moe", {"num_hidden_layers": 3, "mlp_only_layers": [1]}, r"blocks \[1\] are dense"),
        ("smollm3", {"no_rope_layers": [0, 1, 1, 1]}, "every 4th layer NoPE"),
        ("gpt_oss", {"swiglu_limit": 5.0}, "swiglu_limit"),
        ("gpt_oss", {"layer_types": ["full_attention", "sliding_attention"]}, "alternating"),
    ],
)
def test_what_llama_cpp_would_run_differently_is_refused(kind, config, match, tmp_path) -> None:
    assert_export_refused(save_random_model(kind, tmp_path / "model", **config), match)
