"""Multi-signature export: prefill_N + decode with the KV cache as inputs and outputs, and
famous's pipeline over the exported programs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_helpers import load, prompt_ids

from famous.genai.export.programs import signature_pipeline
from famous.genai.export.signatures import (
    DECODE,
    MultiSignatureProgram,
    PromptTooLong,
    SignatureModel,
    TorchExportBackend,
    export_signatures,
    plan_prefill,
)
from famous.genai.pipeline import Pipeline
from famous.genai.sampling import SamplingParams
from famous.genai.tokenizer import Tokenizer

LENGTHS = (8, 16)
GREEDY = SamplingParams(max_new_tokens=16, ignore_eos=True)


@pytest.fixture(scope="module")
def programs(tiny_llama: Path, tiny_qwen2: Path) -> dict[str, MultiSignatureProgram]:
    return {
        "llama": export_signatures(load(tiny_llama), LENGTHS),
        "qwen2": export_signatures(load(tiny_qwen2), LENGTHS),
    }


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_each_signature_matches_eager(
    family: str, programs: dict, tiny_llama: Path, tiny_qwen2: Path
) -> None:
    model_dir = {"llama": tiny_llama, "qwen2": tiny_qwen2}[family]
    prog = programs[family]
    assert sorted(prog.programs) == ["decode", "prefill_16", "prefill_8"]
    eager = load(model_dir)
    ids = prompt_ids(13)
    # eager reference: prefill 13 tokens, then decode one
    ref, cache = eager(torch.tensor([ids]), torch.arange(13), eager.init_cache())
    ref_dec, _ = eager(torch.tensor([[7]]), torch.tensor([13]), cache)
    # prefill_16 with 3 padding tokens, logits of row 12, then decode from its cache
    padded = torch.tensor([[*ids, 0, 0, 0]])
    kv = prog.meta.empty_cache()
    out = prog.programs["prefill_16"].module()(padded, torch.arange(16), torch.tensor([12]), *kv)
    torch.testing.assert_close(out[0][0, 0], ref[0, 12], rtol=0, atol=1e-5)
    for got, (k, v) in zip(zip(out[1::2], out[2::2], strict=True), cache, strict=True):
        torch.testing.assert_close(got[0][:, :, :13], k[:, :, :13], rtol=0, atol=1e-6)
        torch.testing.assert_close(got[1][:, :, :13], v[:, :, :13], rtol=0, atol=1e-6)
    dec = prog.programs[DECODE].module()(torch.tensor([[7]]), torch.tensor([13]), *out[1:])
    torch.testing.assert_close(dec[0], ref_dec, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_pipeline_over_exported_programs_gives_eager_tokens(
    family: str, programs: dict, tiny_llama: Path, tiny_qwen2: Path
) -> None:
    model_dir = {"llama": tiny_llama, "qwen2": tiny_qwen2}[family]
    eager = Pipeline(load(model_dir), Tokenizer(model_dir))
    exported = signature_pipeline(TorchExportBackend(programs[family]), model_dir)
    for n in (5, 16, 27):  # padded prefill_8, exact prefill_16, chunked 16 + padded 16
        ids = prompt_ids(n, seed=n)
        want = eager.generate(ids, GREEDY).token_ids
        exported.model.calls.clear()
        got = exported.generate(ids, GREEDY).token_ids
        assert got == want, (n, got, want)
        assert len(set(want)) > 3  # the random model does not just repeat one token
    assert exported.model.calls[:2] == ["prefill_16", "prefill_16"]
    assert exported.model.calls[2:] == [DECODE] * (GREEDY.max_new_tokens - 1)
    # text prompts go through the same tokenizer
    assert exported.generate("The quick brown fox", GREEDY).text == (
        eager.generate("The quick brown fox", GREEDY).text
    )


def test_prefill_plan_and_long_prompts(programs: dict) -> None:
    meta = programs["llama"].meta
    assert [s.signature for s in plan_prefill(3, meta)] == ["prefill_8"]
    assert [s.signature for s in plan_prefill(9, meta)] == ["prefill_16"]
    assert [(s.signature, s.real) for s in plan_prefill(40, meta)] == [
        ("prefill_16", 16),
        ("prefill_16", 16),
        ("prefill_8", 8),
    ]
    # padding must not run past the 64-slot cache: exact prefills then decode steps
    tail = plan_prefill(5, meta, start=58)
    assert all(s.start + s.length <= 64 for s in tail)
    assert sum(s.real for s in tail) == 5
    with pytest.raises(PromptTooLong, match="largest prefill signature holds 16"):
        plan_prefill(17, meta, chunk=False)
    with pytest.raises(PromptTooLong, match="64-slot KV cache"):
        plan_prefill(70, meta)
    model = SignatureModel(TorchExportBackend(programs["llama"]), chunk=False)
    with pytest.raises(PromptTooLong, match="enable chunking"):
        model(torch.tensor([prompt_ids(20)]), torch.arange(20), model.init_cache())
    with pytest.raises(ValueError, match="one prompt at a time"):
        model.init_cache(2)


def test_pt2_archive_round_trip(programs: dict, tmp_path: Path) -> None:
    prog = programs["qwen2"]
    path = prog.save(tmp_path / "qwen2.pt2")
    loaded = MultiSignatureProgram.load(path)
    assert sorted(loaded.programs) == sorted(prog.programs)
    assert loaded.meta == prog.meta
    args = [torch.tensor([[5]]), torch.tensor([0]), *prog.meta.empty_cache()]
    torch.testing.assert_close(
        loaded.programs[DECODE].module()(*args)[0], prog.programs[DECODE].module()(*args)[0]
    )


def test_bad_prefill_lengths(tiny_llama: Path) -> None:
    with pytest.raises(ValueError, match="max_seq_len=64"):
        export_signatures(load(tiny_llama), (8, 128))
