"""The mixture-of-experts families (Qwen3-MoE, Mixtral, gpt-oss) and the dense ones with
their own twists (OLMo 2, Granite, SmolLM3) against transformers on the same random weights, fp32:
prefill logits and every decode step's logits within 1e-5 of the logits' scale (fp32
sums in another order differ by a few 1e-6 on logits of about 10), the same greedy tokens.

Weights are drawn wider than the Hub's init (initializer_range 0.2) so the logits spread
over several units and a wrong sign, scale or routing would show far above 1e-5."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from genai_helpers import save_hf_model
from test_parity import famous_greedy, hf_greedy

from famous.genai.layers.moe import MixtureOfExperts
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config, load_config

FAMILIES = ["qwen3_moe", "mixtral", "olmo2", "granite", "smollm3", "gpt_oss", "qwen2_moe"]
PROMPT, STEPS = 24, 6
TOL = 1e-5


def _check(hf_config: dict, model_dir: Path) -> float:
    """Prefill and decode against transformers; returns the largest |Δ| seen."""
    # no eos: transformers' min_new_tokens would mask it while famous's greedy may pick it
    hf_config = {**hf_config, "initializer_range": 0.2, "eos_token_id": None}
    hf_model = save_hf_model(hf_config, model_dir)
    ours = load_model(model_dir, max_seq_len=PROMPT + STEPS + 4)
    ids = torch.randint(
        3, hf_config["vocab_size"], (1, PROMPT), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ref = hf_model(ids).logits
        got, _ = ours(ids, torch.arange(PROMPT), ours.init_cache(1))
    worst = (ref - got).abs().max().item()
    scale = ref.abs().max().item()
    assert scale > 1.0  # logits that a scaling error would move visibly
    ref_tokens, ref_steps = hf_greedy(hf_model, ids, STEPS)
    tokens, steps = famous_greedy(ours, ids, STEPS)
    assert tokens == ref_tokens
    for a, b in zip(ref_steps, steps, strict=True):
        worst = max(worst, (a - b).abs().max().item())
    assert worst < TOL * scale, f"max |Δ logits| {worst:.3g} on logits up to {scale:.3g}"
    return worst


@pytest.mark.parametrize("model_type", FAMILIES)
def test_family_matches_transformers_in_fp32(model_type: str, tmp_path: Path) -> None:
    _check(fake_hf_config(model_type), tmp_path)


def test_qwen3_moe_dense_layers_and_unnormalized_routing(tmp_path: Path) -> None:
    """``mlp_only_layers`` / ``decoder_sparse_step`` make some blocks dense, and without
    ``norm_topk_prob`` the top-k probabilities are used as they are."""
    cfg = {
        **fake_hf_config("qwen3_moe"),
        "num_hidden_layers": 3,
        "mlp_only_layers": [0],
        "decoder_sparse_step": 1,
        "norm_topk_prob": False,
    }
    _check(cfg, tmp_path)
    famous_cfg = load_config(tmp_path)
    assert [b.moe is not None for b in famous_cfg.blocks] == [False, True, True]
    assert not famous_cfg.blocks[1].moe.normalize_top_k


def test_smollm3_nope_layers_follow_the_config(tmp_path: Path) -> None:
    """An explicit ``no_rope_layers`` pattern other than every 4th layer."""
    cfg = {**fake_hf_config("smollm3"), "no_rope_layers": [0, 1, 0, 1]}
    _check(cfg, tmp_path)
    assert [b.attention.use_rope for b in load_config(tmp_path).blocks] == [False, True] * 2


def test_gathered_and_grouped_expert_paths_agree() -> None:
    """The decode path (gather the chosen experts' weights) and the prompt path (each
    chosen expert once over its tokens) compute the same mixture, token by token, and both
    equal the definition: the weighted sum of each token's chosen experts run one by one."""
    from famous.genai.config import MoEConfig

    torch.manual_seed(0)
    moe = MixtureOfExperts(32, MoEConfig(num_experts=6, top_k=2, intermediate_size=16))
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(20, 32)
    with torch.no_grad():
        weights, experts = moe.route(x)
        grouped = moe._grouped(x, weights, experts)
        gathered = moe._gathered(x, weights, experts)
        by_hand = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for w, e in zip(weights[t], experts[t], strict=True):
                gate, up = (moe.gate_up[e] @ x[t]).split(16)
                by_hand[t] += w * (moe.down[e] @ (torch.nn.functional.silu(gate) * up))
        one_by_one = torch.cat([moe(x[t : t + 1]) for t in range(x.shape[0])])
    assert torch.allclose(grouped, by_hand, atol=1e-5)
    assert torch.allclose(gathered, by_hand, atol=1e-5)
    assert torch.allclose(one_by_one, by_hand, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(20))  # renormalized top-k


def test_eager_quantization_refuses_experts_before_changing_anything(tmp_path: Path) -> None:
    from famous.genai.quantize import get_recipe
    from famous.genai.quantize.modules import apply_recipe

    save_hf_model(fake_hf_config("mixtral"), tmp_path)
    model = load_model(tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NotImplementedError, match="mixture-of-experts"):
        apply_recipe(model, get_recipe("int8"))
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
