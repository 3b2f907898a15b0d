"""famous's CPU decode kernels: each kernel against PyTorch, the kernel decode step against
the module path for every family, and the fallbacks when the kernels cannot be used."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from genai_helpers import save_hf_model

from famous.genai import kernels
from famous.genai.kernels import hugepages
from famous.genai.kernels.decode import plan_for
from famous.genai.layers.norm import RMSNorm
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config, families

pytestmark = pytest.mark.skipif(
    kernels.cpu_kernels() is None, reason="no C compiler here: famous's kernels are not built"
)
FAKE = [(mt, c) for f in families() for mt, c in f.fake_hf_configs.items()]
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture
def fresh_kernels():
    """Forget the loaded kernels before and after a test that changes how they load."""
    kernels.cpu_kernels.cache_clear()
    yield
    kernels.cpu_kernels.cache_clear()


def _close(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16:
        assert torch.equal(got, ref), f"{(got != ref).sum().item()} of {ref.numel()} differ"
    else:
        torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize(("n", "k"), [(7, 13), (33, 64), (100, 200), (50, 80), (960, 576)])
def test_linear_matches_pytorch(dtype: torch.dtype, n: int, k: int) -> None:
    """One row (a decoding step): bf16 results equal PyTorch's bit for bit, fp32 within
    rounding; bias and the fused residual add follow PyTorch's rounding."""
    g = torch.Generator().manual_seed(n * k)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    x = torch.randn(1, 1, k, generator=g).to(dtype)
    r = torch.randn(1, 1, n, generator=g).to(dtype)
    ops = kernels.cpu_kernels()
    _close(ops.linear(x, w), F.linear(x, w), dtype)
    _close(ops.linear(x, w, b), F.linear(x, w, b), dtype)
    _close(ops.linear(x, w, b, residual=r), r + F.linear(x, w, b), dtype)
    rows = torch.randn(3, k, generator=g).to(dtype)  # a small batch: close, not exact
    torch.testing.assert_close(ops.linear(rows, w), F.linear(rows, w), atol=0.1, rtol=0.02)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("zero_centered", [False, True], ids=["plain", "zero-centred"])
def test_rms_norm_alone_and_fused_into_the_linear(dtype: torch.dtype, zero_centered: bool) -> None:
    g = torch.Generator().manual_seed(3)
    norm = RMSNorm(1024, 1e-6, zero_centered).to(dtype)
    with torch.no_grad():
        norm.weight.normal_(0.0 if zero_centered else 1.0, 0.1, generator=g)
    x = (torch.randn(4, 1024, generator=g) * 3).to(dtype)
    w = torch.randn(64, 1024, generator=g).to(dtype)
    ops = kernels.cpu_kernels()
    with torch.no_grad():
        _close(ops.rms_norm(x, norm.weight, norm.eps, zero_centered), norm(x), dtype)
        spec = (norm.weight, norm.eps, zero_centered)
        _close(ops.linear(x[:1], w, norm=spec), F.linear(norm(x[:1]), w), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("act", ["silu", "gelu_tanh", "gelu", "relu"])
def test_activation_fused_into_the_linear(dtype: torch.dtype, act: str) -> None:
    torch_act = {
        "silu": F.silu,
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
        "gelu": F.gelu,
        "relu": F.relu,
    }[act]
    g = torch.Generator().manual_seed(4)
    h = (torch.randn(1, 256, generator=g) * 2).to(dtype)
    w = torch.randn(32, 128, generator=g).to(dtype)
    gate, up = h.split(128, dim=-1)
    ops = kernels.cpu_kernels()
    gated = ops.linear(h, w, activation=(act, True))
    plain = ops.linear(gate, w, activation=(act, False))
    tol = dict(atol=0.05, rtol=0.01) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-5)
    # transcendental functions may round an ulp apart from PyTorch's vectorised ones
    torch.testing.assert_close(gated, F.linear(torch_act(gate) * up, w), **tol)
    torch.testing.assert_close(plain, F.linear(torch_act(gate), w), **tol)


# ------------------------------------------------------------------------------ decode step


def _decode(model, ids: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor], tuple]:
    t = ids.shape[1]
    with torch.no_grad():
        logits, cache = model(
            ids, torch.arange(t), model.init_cache(1), end=t, inplace=True, last_logits_only=True
        )
        tokens, out = [], []
        for i in range(steps):
            tok = int(logits[0, -1].argmax())
            tokens.append(tok)
            logits, cache = model(
                torch.tensor([[tok]]), torch.tensor([t + i]), cache, end=t + i + 1, inplace=True
            )
            out.append(logits.float())
    return tokens, out, cache


# Gemma 2 whose window covers the whole cache: no ring, so fp32 runs the kernels' soft-capped
# attention; bf16 soft-capping stays on the module path
WIDE_GEMMA2 = ("gemma2-window-64", {**fake_hf_config("gemma2"), "sliding_window": 64})
DECODERS = [*FAKE, WIDE_GEMMA2]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize(("model_type", "hf_config"), DECODERS, ids=[m for m, _ in DECODERS])
def test_kernel_decode_matches_the_module_path(
    model_type: str, hf_config: dict, dtype: torch.dtype, tmp_path: Path, monkeypatch, fresh_kernels
) -> None:
    """Every family decodes the same tokens with the kernels as with PyTorch's modules;
    bf16 logits are bit-identical. Ring (sliding-window) caches and bf16 soft-capping keep
    the module path."""
    save_hf_model(hf_config, tmp_path)
    model = load_model(tmp_path, dtype=dtype, max_seq_len=48)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, hf_config["vocab_size"], (1, 20), generator=g)
    rings = any(r is not None for r in model._rings)
    soft_capped = hf_config.get("attn_logit_softcapping") is not None
    expected = not rings and not (soft_capped and dtype == torch.bfloat16)
    assert (plan_for(model, ids[:, :1]) is not None) == expected
    fast_tokens, fast_logits, fast_cache = _decode(model, ids, 16)
    monkeypatch.setenv("FAMOUS_NATIVE_KERNELS", "0")
    kernels.cpu_kernels.cache_clear()
    assert plan_for(model, ids[:, :1]) is None
    ref_tokens, ref_logits, ref_cache = _decode(model, ids, 16)
    assert fast_tokens == ref_tokens
    for a, b in zip(fast_logits, ref_logits, strict=True):
        _close(a, b, dtype)
    for (fk, fv), (rk, rv) in zip(fast_cache, ref_cache, strict=True):
        _close(fk, rk, dtype)
        _close(fv, rv, dtype)


# ------------------------------------------------------------------------------ fallbacks


def test_quantized_or_batched_models_keep_the_module_path(tiny_chat_model: Path) -> None:
    from famous.genai.quantize import get_recipe
    from famous.genai.quantize.modules import apply_recipe

    model = load_model(tiny_chat_model, max_seq_len=32)
    one = torch.tensor([[5]])
    assert plan_for(model, one) is not None
    assert plan_for(model, torch.tensor([[5], [6]])) is None  # a batch of two rows
    assert plan_for(model.to(torch.float16), one) is None  # fp16: no kernel
    model = load_model(tiny_chat_model, max_seq_len=32)
    apply_recipe(model, get_recipe("int8"))
    assert plan_for(model, one) is None


def test_disabled_or_without_a_compiler_famous_uses_pytorch(
    monkeypatch, tmp_path: Path, caplog, fresh_kernels
) -> None:
    monkeypatch.setenv("FAMOUS_NATIVE_KERNELS", "0")
    assert kernels.cpu_kernels() is None
    kernels.cpu_kernels.cache_clear()
    monkeypatch.delenv("FAMOUS_NATIVE_KERNELS")
    monkeypatch.setenv("FAMOUS_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang either
    with caplog.at_level(logging.WARNING, logger="famous.genai.kernels"):
        assert kernels.cpu_kernels() is None
    assert "no C compiler found" in caplog.text


def test_the_library_is_built_once_per_machine_and_source(
    monkeypatch, tmp_path: Path, fresh_kernels
) -> None:
    monkeypatch.setenv("FAMOUS_KERNEL_CACHE", str(tmp_path))
    assert kernels.cpu_kernels() is not None
    built = list((tmp_path / "kernels").glob("cpu_decode-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    kernels.cpu_kernels.cache_clear()
    assert kernels.cpu_kernels() is not None
    assert [p.stat().st_mtime_ns for p in (tmp_path / "kernels").glob("*.so")] == [stamp]


@pytest.mark.skipif(not hugepages.available(), reason="no transparent huge pages here")
def test_weights_move_into_huge_pages_unchanged() -> None:
    """Decoding moves each block's projections into one huge-page mapping: same values, the
    same Parameter objects, 2 MiB-aligned, and a group is moved only once."""
    g = torch.Generator().manual_seed(6)
    params = [
        torch.nn.Parameter(torch.randn(n, 512, generator=g), requires_grad=False)
        for n in (1536, 640, 1024)
    ]
    before = [p.data.clone() for p in params]
    small = torch.nn.Parameter(torch.randn(8, 8, generator=g), requires_grad=False)
    small_ptr = small.data_ptr()
    moved = hugepages.move_to_huge_pages([params, [small]])
    assert moved >= sum(p.numel() * 4 for p in params)
    assert params[0].data_ptr() % hugepages.HUGE_PAGE == 0
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert small.data_ptr() == small_ptr  # under 2 MiB: left where it was
    assert hugepages.move_to_huge_pages([params]) == 0  # already moved
    params[1].data.mul_(2)  # still ordinary, writable tensors
    assert torch.equal(params[1], before[1] * 2)


def test_a_cache_the_kernels_cannot_write_goes_to_the_module_path(tiny_chat_model: Path) -> None:
    """The kernels write raw memory, so a cache that is too short, of another dtype or of
    another shape is never handed to them: the module path runs and raises its own error."""
    model = load_model(tiny_chat_model, max_seq_len=32)
    tok = torch.tensor([[5]])
    good = model.init_cache(1)
    assert plan_for(model, tok, good, 31) is not None
    assert plan_for(model, tok, good, 32) is None  # slot 32 does not exist
    assert plan_for(model, tok, model.init_cache(1, torch.bfloat16), 0) is None
    assert plan_for(model, tok, model.init_cache(2), 0) is None  # a batch of two rows
    with torch.no_grad(), pytest.raises((RuntimeError, IndexError)):
        model(tok, torch.tensor([40]), good, end=41, inplace=True)
