"""``famous verify``: each decode step's logits against transformers (max |Δ| per step),
with both sides decoding greedily through EOS rather than one suppressing it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from genai_helpers import save_hf_model
from test_rope_scaling import CASES

from famous.genai.models import fake_hf_config
from famous.genai.verify import verify

PROMPT, NEW = 16, 12


def test_both_sides_decode_through_eos(tmp_path: Path) -> None:
    """The model's EOS is the token transformers' plain greedy picks at step 3: verify's
    reference picks it too (no suppression), famous agrees, and both go on past it."""
    cfg = fake_hf_config("llama")
    hf_model = save_hf_model(cfg, tmp_path)
    ids = torch.randint(
        3, cfg["vocab_size"], (1, PROMPT), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():  # the same prompt verify draws (seed 0)
        plain = hf_model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        )[0, PROMPT:].tolist()
    conf = json.loads((tmp_path / "config.json").read_text())
    conf["eos_token_id"] = plain[3]
    (tmp_path / "config.json").write_text(json.dumps(conf))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": plain[3]}))
    report = verify(tmp_path, prompt_tokens=PROMPT, new_tokens=NEW)
    assert report.reference_tokens == plain and report.famous_tokens == plain
    assert len(report.step_logit_diffs) == NEW
    assert report.ok, report.to_dict()
    assert max(report.step_logit_diffs) < 1e-4


def test_every_decode_step_is_compared_across_longrope_switch(tmp_path: Path) -> None:
    """LongRoPE switching factors at position 32 mid-decode (transformers re-prefills
    there): every step's logits still agree, and the report carries one Δ per step."""
    cfg, _ = CASES["longrope-short-prompt"]
    save_hf_model(cfg, tmp_path)
    report = verify(tmp_path, prompt_tokens=24, new_tokens=NEW)
    assert len(report.step_logit_diffs) == NEW and report.max_step_logit_diff < 1e-4
    assert report.ok and report.to_dict()["max_step_logit_diff"] == report.max_step_logit_diff
