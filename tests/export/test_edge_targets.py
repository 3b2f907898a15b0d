"""ExecuTorch (.pte, XNNPACK) and LiteRT (.tflite, XNNPACK): logits parity with the eager
model and identical greedy tokens through famous's pipeline. Each skips with the reason
when its optional package is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from export_helpers import load, prompt_ids

from famous.genai.export.programs import open_backend, signature_pipeline
from famous.genai.export.signatures import DECODE, SignatureModel
from famous.genai.pipeline import Pipeline
from famous.genai.sampling import SamplingParams
from famous.genai.tokenizer import Tokenizer

GREEDY = SamplingParams(max_new_tokens=12, ignore_eos=True)

needs_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed (extra 'executorch': pip install executorch)",
)


def _litert_ready() -> str | None:
    from famous.genai.export.litert import converter_available, runtime_available

    if not runtime_available():
        return "ai-edge-litert is not installed (extra 'litert')"
    if not converter_available():
        return "litert-torch is not importable and FAMOUS_LITERT_PYTHON names no interpreter"
    return None


def check_artifact(path: Path, model_dir: Path) -> None:
    """Every signature's logits vs eager, then greedy tokens through the pipeline."""
    backend = open_backend(path)
    meta = backend.meta
    eager = load(model_dir, meta.max_seq_len)
    ids = prompt_ids(6)
    ref, cache = eager(torch.tensor([ids]), torch.arange(6), eager.init_cache())
    ref_dec, _ = eager(torch.tensor([[9]]), torch.tensor([6]), cache)
    for n in meta.prefill_lengths:
        out = backend.run(
            f"prefill_{n}",
            [
                torch.tensor([ids + [0] * (n - 6)]),
                torch.arange(n),
                torch.tensor([5]),
                *meta.empty_cache(),
            ],
        )
        err = (out[0][0, 0] - ref[0, 5]).abs().max().item()
        assert err < 1e-4, (path.name, n, err)
    dec = backend.run(DECODE, [torch.tensor([[9]]), torch.tensor([6]), *out[1:]])
    assert (dec[0] - ref_dec).abs().max().item() < 1e-4
    pipe = signature_pipeline(backend, model_dir)
    want = Pipeline(eager, Tokenizer(model_dir))
    for n in (5, 21):  # one padded prefill; chunked (16 + padded 8)
        p = prompt_ids(n, seed=n)
        assert pipe.generate(p, GREEDY).token_ids == want.generate(p, GREEDY).token_ids
    assert isinstance(pipe.model, SignatureModel)


@needs_executorch
def test_executorch_round_trip(tiny_qwen2: Path, tmp_path: Path) -> None:
    from famous.genai.export.executorch import export_executorch, meta_path

    path = export_executorch(load(tiny_qwen2), tmp_path / "qwen2.pte", (8, 16))
    assert path.stat().st_size > 0 and meta_path(path).is_file()
    check_artifact(path, tiny_qwen2)


def test_litert_round_trip(tiny_qwen2: Path, tmp_path: Path) -> None:
    reason = _litert_ready()
    if reason:
        pytest.skip(reason)
    from famous.genai.export.litert import export_litert

    path = export_litert(tiny_qwen2, tmp_path / "qwen2.tflite", (8, 16), max_seq_len=64)
    check_artifact(path, tiny_qwen2)


def test_litert_without_converter_says_how_to_install(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from famous.genai.export import litert

    monkeypatch.setattr(litert, "converter_python", lambda: None)
    with pytest.raises(litert.LiteRTUnavailable, match="FAMOUS_LITERT_PYTHON"):
        litert.export_litert(tiny_qwen2, tmp_path / "x.tflite")
    assert not list(tmp_path.iterdir())


@needs_executorch
@pytest.mark.slow  # the export alone takes about 4 minutes on 2 shared cores
def test_executorch_sliding_window_ring_matches_eager(tmp_path: Path) -> None:
    """Gemma 3 with a 16-token window (a 16-slot ring cache on its sliding layer): the
    .pte's prefill and every decode step, past the window, give the eager model's logits
    and greedy tokens (the ring's not-yet-written slots once made ExecuTorch index out of
    range on every call)."""
    from export_helpers import make_model

    from famous.genai.export.executorch import export_executorch
    from famous.genai.generation import Stepper

    model_dir = make_model("gemma3_text", tmp_path / "gemma3")
    eager = load(model_dir, 64)
    path = export_executorch(eager, tmp_path / "gemma3.pte", (8,))
    pipe = signature_pipeline(open_backend(path), model_dir)
    for n in (5, 21):  # within the window; past it (8 + 8 + exact-size steps)
        ids = prompt_ids(n, seed=n)
        ours, ref = Stepper(pipe.model), Stepper(eager)
        with torch.inference_mode():
            got, want = ours.start(ids), ref.start(ids)
            for i in range(24):
                err = (got[0, -1] - want[0, -1]).abs().max().item()
                # XNNPACK's fp32 kernels sum in another order: about 5e-4 on these logits
                assert err < 2e-3, f"prompt {n}, step {i}: logits differ by {err:.3g}"
                tok = int(want[0, -1].argmax())
                got, want = ours.step(tok), ref.step(tok)
        eager_tokens = Pipeline(eager, Tokenizer(model_dir)).generate(ids, GREEDY).token_ids
        assert pipe.generate(ids, GREEDY).token_ids == eager_tokens
