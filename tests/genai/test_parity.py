"""Every family against transformers on the same random weights: logits and greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from genai_helpers import (
    assert_bf16_as_accurate,
    assert_decisive_top1_agree,
    hf_greedy,
    save_hf_model,
)

from famous.genai.kernels.decode import decode
from famous.genai.loader import load_model
from famous.genai.models import families

PROMPT_LEN = 64
NEW_TOKENS = 32

FAKE = [(mt, c) for f in families() for mt, c in f.fake_hf_configs.items()]
REAL = [(mt, c) for f in families() for mt, c in f.realistic_hf_configs.items()]


def famous_greedy(
    model, ids: torch.Tensor, n: int, forced: list[int] | None = None
) -> tuple[list[int], list[torch.Tensor]]:
    """Prefill then decode one token at a time with the in-place cache: greedy, or
    teacher-forced over ``forced``. Returns the tokens and the logits that chose each."""
    t = ids.shape[1]
    cache = model.init_cache(1)
    with torch.no_grad():
        logits, cache = model(
            ids, torch.arange(t), cache, end=t, inplace=True, last_logits_only=True
        )
        tokens, steps = [], []
        for i in range(n):
            steps.append(logits[0, -1].float())
            tok = int(logits[0, -1].argmax()) if forced is None else forced[i]
            tokens.append(tok)
            pos = t + i
            logits, cache = decode(model, torch.tensor([[tok]]), torch.tensor([pos]), cache)
    return tokens, steps


def _prompt(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, vocab, (1, PROMPT_LEN), generator=g)


def _check_fp32(hf_model, model_dir: Path, vocab: int) -> tuple[list[int], list[torch.Tensor]]:
    """famous fp32 against transformers fp32; returns transformers' greedy tokens and
    their logits."""
    ours = load_model(model_dir, max_seq_len=PROMPT_LEN + NEW_TOKENS + 8)
    ids = _prompt(vocab)
    with torch.no_grad():
        ref = hf_model(ids).logits
        got, _ = ours(ids, torch.arange(PROMPT_LEN), ours.init_cache(1))  # functional path
    assert (ref - got).abs().max().item() < 1e-4
    ref_tokens, ref_steps = hf_greedy(hf_model, ids, NEW_TOKENS)
    tokens, steps = famous_greedy(ours, ids, NEW_TOKENS)
    assert tokens == ref_tokens
    for a, b in zip(ref_steps, steps, strict=True):
        assert (a - b).abs().max().item() < 1e-4
    return ref_tokens, ref_steps


@pytest.mark.parametrize(("model_type", "hf_config"), FAKE, ids=[m for m, _ in FAKE])
def test_fake_config_matches_transformers(model_type: str, hf_config: dict, tmp_path: Path) -> None:
    hf_model = save_hf_model(hf_config, tmp_path)
    _check_fp32(hf_model, tmp_path, hf_config["vocab_size"])


@pytest.mark.slow
@pytest.mark.parametrize(("model_type", "hf_config"), REAL, ids=[m for m, _ in REAL])
def test_realistic_shape_fp32_and_bf16(model_type: str, hf_config: dict, tmp_path: Path) -> None:
    """fp32 as in the fake configs. bf16, where famous and transformers round differently
    (and each differently on each ISA): both teacher-forced over the fp32 greedy tokens,
    famous's logits are about as close to fp32's as transformers' are, and famous picks
    the fp32 top-1 at every step that bf16 error cannot overturn."""
    from transformers import AutoModelForCausalLM

    hf_model = save_hf_model(hf_config, tmp_path)
    ref_tokens, ref_logits = _check_fp32(hf_model, tmp_path, hf_config["vocab_size"])
    del hf_model
    # bf16 as a user would load it (transformers computes its RoPE tables in fp32 then)
    hf_bf16 = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    ours = load_model(tmp_path, dtype="bf16", max_seq_len=PROMPT_LEN + NEW_TOKENS + 8)
    assert ours.embed.weight.dtype == torch.bfloat16
    ids = _prompt(hf_config["vocab_size"])
    with torch.no_grad():  # one pass over prompt + forced tokens: every step's logits
        forced = torch.cat((ids, torch.tensor([ref_tokens[:-1]])), dim=1)
        theirs = list(hf_bf16(forced).logits[0, PROMPT_LEN - 1 :].float())
    _, logits = famous_greedy(ours, ids, NEW_TOKENS, forced=ref_tokens)
    assert_bf16_as_accurate(logits, theirs, ref_logits, what="bf16 logits")
    assert assert_decisive_top1_agree(logits, theirs, ref_logits) > 0


def test_functional_and_inplace_paths_agree(tmp_path: Path) -> None:
    """The exportable (functional, full-cache) path and the eager fast path give the same
    logits token by token, including a sliding-window ring shorter than the sequence."""
    from famous.genai.models import fake_hf_config

    cfg = fake_hf_config("gemma2")
    save_hf_model(cfg, tmp_path)
    model = load_model(tmp_path, max_seq_len=64)
    ids = _prompt(cfg["vocab_size"])[:, :40]
    c1, c2 = model.init_cache(1), model.init_cache(1)
    with torch.no_grad():
        a, c1 = model(ids[:, :20], torch.arange(20), c1)
        b, c2 = model(ids[:, :20], torch.arange(20), c2, end=20, inplace=True)
        assert torch.allclose(a, b, atol=1e-5)
        for p in range(20, 40):
            tok, pos = ids[:, p : p + 1], torch.tensor([p])
            a, c1 = model(tok, pos, c1)
            b, c2 = model(tok, pos, c2, end=p + 1, inplace=True)
            assert torch.allclose(a, b, atol=1e-5)
    # the ring layer holds `sliding_window` slots, the full layer the whole capacity
    assert c1[0][0].shape[2] == cfg["sliding_window"]
    assert c1[1][0].shape[2] == 64
