"""famous's CPU decode kernels: each kernel against an fp64 reference (and PyTorch), on every
build this CPU can run; every build compiles; the kernel decode step against the module
path for every family; the fallbacks when the kernels cannot be used."""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from genai_helpers import (
    BF16_U,
    assert_bf16_as_accurate,
    assert_decisive_top1_agree,
    decode_tokens,
    save_hf_model,
)

from famous.genai import kernels
from famous.genai.kernels import decode, hugepages
from famous.genai.kernels.decode import plan_for
from famous.genai.layers.norm import RMSNorm
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config, families

pytestmark = pytest.mark.skipif(
    kernels.cpu_kernels() is None, reason="no C compiler here: famous's kernels are not built"
)
FAKE = [(mt, c) for f in families() for mt, c in f.fake_hf_configs.items()]
DTYPES = [torch.float32, torch.bfloat16]

# Every build this CPU can execute (always "native" and "generic"); the others are only
# compiled (test_every_target_compiles).
RUNNABLE = [t for t in kernels.TARGETS if kernels.can_run(t)]
# The ISA each named target must report (what famous_kernels_isa was compiled as).
ISA = {
    "avx512-bf16": "avx512-bf16",
    "avx512": "avx512",
    "avx2": "avx2",
    "generic": "neon" if platform.machine().lower() in ("aarch64", "arm64") else "generic",
}

# PyTorch's bf16 GEMV sums in the kernels' 8-lane order when its CPU capability is AVX2;
# on AVX-512 CPUs it runs other kernels (its AVX-512 ones, or oneDNN's), which round
# differently. Bit-identity with PyTorch is asserted only here.
PYTORCH_SUMS_LIKE_AVX2 = torch.backends.cpu.get_cpu_capability() == "AVX2" and not (
    "avx512" in kernels.TARGETS and kernels.can_run("avx512")
)


@functools.cache
def _ops(target: str) -> kernels.CpuKernels:
    return kernels.load_kernels(target)


def _bitwise_like_pytorch(ops: kernels.CpuKernels) -> bool:
    return PYTORCH_SUMS_LIKE_AVX2 and ops.isa != "avx512-bf16"


@pytest.fixture
def fresh_kernels():
    """Forget the loaded kernels before and after a test that changes how they load."""
    kernels.cpu_kernels.cache_clear()
    yield
    kernels.cpu_kernels.cache_clear()


def _within(got: torch.Tensor, exact: torch.Tensor, bound: torch.Tensor) -> None:
    err = (got.double() - exact).abs()
    bad = err > bound * 1.02  # the bound is first-order: 2 % for its second-order terms
    worst = float((err / bound.clamp_min(1e-300)).max())
    assert not bad.any(), f"{int(bad.sum())} of {err.numel()} beyond the bound ({worst:.2f} x)"


def _gemv_exact(
    xin: torch.Tensor,
    xin_err: torch.Tensor | float,
    w: torch.Tensor,
    b: torch.Tensor | None = None,
    r: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact bf16 GEMV ``r + (xin @ w.T + b)`` (fp64 of the exact prepared input xin) and
    how far the kernel may be from it: its input's error (``xin_err``) carried through the
    weights, fp32 summation (k terms, unit 2^-24), and a bf16 rounding of the product and,
    with a residual, of the sum."""
    w64 = w.double()
    v = xin @ w64.T + (0 if b is None else b.double())
    k = w.shape[1]
    bound = BF16_U * v.abs() + k * 2.0**-24 * (xin.abs() @ w64.abs().T)
    bound = bound + (xin_err * torch.ones_like(xin)) @ w64.abs().T
    if r is None:
        return v, bound
    return r.double() + v, bound + BF16_U * (r.double() + v).abs()


def _check_linear(
    got: torch.Tensor,
    want: torch.Tensor,
    dtype: torch.dtype,
    ops: kernels.CpuKernels,
    exact: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """fp32: PyTorch's result within rounding. bf16: the exact result within the bf16
    bound, and PyTorch's bit for bit where it sums in the kernels' order."""
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
        return
    _within(got, *exact)
    if _bitwise_like_pytorch(ops):
        assert torch.equal(got, want), f"{(got != want).sum().item()} of {want.numel()} differ"


# ------------------------------------------------------------------------------ builds


@pytest.mark.parametrize(
    "target",
    list(kernels.TARGETS),
    ids=[t if kernels.can_run(t) else f"{t}-compile-only" for t in kernels.TARGETS],
)
def test_every_target_compiles(target: str) -> None:
    """Every target's source paths compile on any machine of the architecture (a CPU
    without AVX-512 still proves the AVX-512 code builds); a target this CPU runs also
    loads and reports its ISA. The numerical tests below run on the runnable ones."""
    path = kernels.build_kernels(target)
    isa = ISA.get(target)
    if isa is not None:  # the build took the ISA's branch of the source
        assert isa.encode() + b"\0" in path.read_bytes()
    if target in RUNNABLE:
        assert isa is None or _ops(target).isa == isa


def _every_kernel(ops: kernels.CpuKernels, dtype: torch.dtype) -> list[torch.Tensor]:
    """Attention (its output and the cache it writes), a norm-fused and an activation-fused
    linear, on fixed random inputs."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 1, 2 * 300, generator=g).to(dtype)
    w = torch.randn(77, 300, generator=g).to(dtype)
    norm = (torch.rand(300, generator=g).to(dtype) + 0.5, 1e-6, False)
    qkv = torch.randn(6 * 32, generator=g).to(dtype)
    cos, sin = torch.rand(2, 32, generator=g).to(dtype)
    k, v = torch.randn(2, 1, 1, 9, 32, generator=g).to(dtype).unbind()
    attention = (cos, sin, None, None, 0.0, False, k, v, 8, 0, 4, 1, 32, 0.2, None)
    return [
        ops.attention_decode(qkv, *attention),
        k,
        ops.linear(x[..., :300], w, norm=norm),
        ops.linear(x, w, activation=("gelu_tanh", True)),
    ]


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_builds_agree_bit_for_bit(target: str, dtype: torch.dtype) -> None:
    """bf16: every build returns the generic build's results bit for bit (a fused and an
    unfused multiply-add of bf16 values are equal), but AVX512-BF16's own dot product (the
    linears) sums in another order and is within bf16 rounding of it. fp32: the FMA builds
    fuse their dot products on purpose, so they are within rounding of the generic build
    and bit-identical to one another (checked against the native build)."""
    fused = {"avx2", "avx512", "avx512-bf16"}
    ours = _every_kernel(_ops(target), dtype)
    if dtype == torch.float32 and _ops(target).isa in fused:
        same_kind = "native" if _ops("native").isa in fused else target
        for a, b in zip(ours, _every_kernel(_ops(same_kind), dtype), strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        for a, b in zip(ours, _every_kernel(_ops("generic"), dtype), strict=True):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
        return
    generic = _every_kernel(_ops("generic"), dtype)
    own_dot = dtype == torch.bfloat16 and _ops(target).isa == "avx512-bf16"
    # its own dot: one bf16 step apart (2 U relative), or fp32 summation error near zero
    near = dict(atol=1e-2, rtol=2 * BF16_U)
    for i, (a, b) in enumerate(zip(ours, generic, strict=True)):
        torch.testing.assert_close(a, b, **(near if own_dot and i >= 2 else dict(atol=0, rtol=0)))


# ------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize(("n", "k"), [(7, 13), (33, 64), (100, 200), (50, 80), (960, 576)])
def test_linear_matches_pytorch(dtype: torch.dtype, n: int, k: int, target: str) -> None:
    """One row (a decoding step): fp32 within rounding of PyTorch; bf16 within the bf16
    bound of the exact product (bias and fused residual add rounded where PyTorch rounds
    them), and bit-identical to PyTorch where it sums in the same order."""
    g = torch.Generator().manual_seed(n * k)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    x = torch.randn(1, 1, k, generator=g).to(dtype)
    r = torch.randn(1, 1, n, generator=g).to(dtype)
    ops = _ops(target)
    x64 = x.double()
    _check_linear(ops.linear(x, w), F.linear(x, w), dtype, ops, _gemv_exact(x64, 0.0, w))
    _check_linear(ops.linear(x, w, b), F.linear(x, w, b), dtype, ops, _gemv_exact(x64, 0.0, w, b))
    got, want = ops.linear(x, w, b, residual=r), r + F.linear(x, w, b)
    _check_linear(got, want, dtype, ops, _gemv_exact(x64, 0.0, w, b, r))
    rows = torch.randn(3, k, generator=g).to(dtype)  # a small batch: close, not exact
    torch.testing.assert_close(ops.linear(rows, w), F.linear(rows, w), atol=0.1, rtol=0.02)


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("zero_centered", [False, True], ids=["plain", "zero-centred"])
def test_rms_norm_alone_and_fused_into_the_linear(
    dtype: torch.dtype, zero_centered: bool, target: str
) -> None:
    g = torch.Generator().manual_seed(3)
    norm = RMSNorm(1024, 1e-6, zero_centered).to(dtype)
    with torch.no_grad():
        norm.weight.normal_(0.0 if zero_centered else 1.0, 0.1, generator=g)
    x = (torch.randn(4, 1024, generator=g) * 3).to(dtype)
    w = torch.randn(64, 1024, generator=g).to(dtype)
    ops = _ops(target)
    # fp64 RMSNorm; bf16 rounds it twice (plain: h, then w * h; zero-centred once), and
    # fp32 computes the scale to a few of its own ulps
    x64, nw = x.double(), norm.weight.detach().double() + (1.0 if zero_centered else 0.0)
    exact = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + norm.eps) * nw
    err = (2 * BF16_U + 2.0**-20) * exact.abs()
    spec = (norm.weight, norm.eps, zero_centered)
    with torch.no_grad():
        got, want = ops.rms_norm(x, *spec), norm(x)
        fused, fused_want = ops.linear(x[:1], w, norm=spec), F.linear(norm(x[:1]), w)
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    else:
        _within(got, exact, err)
    _check_linear(fused, fused_want, dtype, ops, _gemv_exact(exact[:1], err[:1], w))
    if dtype == torch.bfloat16 and _bitwise_like_pytorch(ops):
        assert torch.equal(got, want)


ACTIVATIONS = {
    "silu": F.silu,
    "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_fused_into_the_linear(dtype: torch.dtype, act: str, target: str) -> None:
    torch_act = ACTIVATIONS[act]
    g = torch.Generator().manual_seed(4)
    h = (torch.randn(1, 256, generator=g) * 2).to(dtype)
    w = torch.randn(32, 128, generator=g).to(dtype)
    gate, up = h.split(128, dim=-1)
    ops = _ops(target)
    gated = ops.linear(h, w, activation=(act, True))
    plain = ops.linear(gate, w, activation=(act, False))
    if dtype == torch.float32:
        # transcendental functions may round an ulp apart from PyTorch's vectorised ones
        tol = dict(atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(gated, F.linear(torch_act(gate) * up, w), **tol)
        torch.testing.assert_close(plain, F.linear(torch_act(gate), w), **tol)
        return
    # bf16: act(gate) rounded, times up rounded (gated); fp32 evaluates act to a few ulps
    a64, u64 = torch_act(gate.double()), up.double()
    a_err = BF16_U * a64.abs() + 2.0**-20 * (gate.double().abs() + 1)
    _within(plain, *_gemv_exact(a64, a_err, w))
    _within(gated, *_gemv_exact(a64 * u64, (a_err + BF16_U * a64.abs()) * u64.abs(), w))


# ------------------------------------------------------------------------------ decode step


# Gemma 2 whose window covers the whole cache: no ring, so fp32 runs the kernels' soft-capped
# attention; bf16 soft-capping stays on the module path
WIDE_GEMMA2 = ("gemma2-window-64", {**fake_hf_config("gemma2"), "sliding_window": 64})
# what the kernels do not implement (experts, post-norm-only blocks with whole-projection
# q/k norms, residual multipliers, NoPE layers): these decode through the modules
MODULE_PATH_ONLY = ["qwen3_moe", "mixtral", "olmo2", "granite", "smollm3", "gpt_oss", "qwen2_moe"]
DECODERS = [*[(m, c) for m, c in FAKE if m not in MODULE_PATH_ONLY], WIDE_GEMMA2]


def _flat(cache: tuple) -> list[torch.Tensor]:
    return [t for pair in cache for t in pair]


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize(("model_type", "hf_config"), DECODERS, ids=[m for m, _ in DECODERS])
def test_kernel_decode_matches_the_module_path(
    model_type: str, hf_config: dict, dtype: torch.dtype, target: str, tmp_path: Path, monkeypatch
) -> None:
    """Every family decodes with the kernels as with PyTorch's modules. fp32: the same
    greedy tokens, logits and caches within rounding. bf16, teacher-forced over the fp32
    greedy tokens: logits and caches as close to fp32 as the module path's, and the fp32
    top-1 wherever it is decisive; bit-identical where PyTorch sums as the kernels do.
    Ring (sliding-window) caches and bf16 soft-capping keep the module path."""
    save_hf_model(hf_config, tmp_path)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, hf_config["vocab_size"], (1, 20), generator=g)
    ops = _ops(target)

    def run(model, with_kernels: bool, forced: list[int] | None = None):
        monkeypatch.setattr(decode, "cpu_kernels", lambda: ops if with_kernels else None)
        return decode_tokens(model, ids, 16, forced)

    model = load_model(tmp_path, dtype=dtype, max_seq_len=48)
    rings = any(lay.ring is not None for lay in model.layout)
    soft_capped = hf_config.get("attn_logit_softcapping") is not None
    expected = not rings and not (soft_capped and dtype == torch.bfloat16)
    monkeypatch.setattr(decode, "cpu_kernels", lambda: ops)
    assert (plan_for(model, ids[:, :1]) is not None) == expected
    if dtype == torch.float32:
        fast_tokens, fast_logits, fast_cache = run(model, True)
        ref_tokens, ref_logits, ref_cache = run(model, False)
        assert fast_tokens == ref_tokens
        fast, ref = fast_logits + _flat(fast_cache), ref_logits + _flat(ref_cache)
        for a, b in zip(fast, ref, strict=True):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
        return
    fp32 = load_model(tmp_path, dtype=torch.float32, max_seq_len=48)
    tokens, ref_logits, ref_cache = run(fp32, False)
    _, fast_logits, fast_cache = run(model, True, tokens)
    _, mod_logits, mod_cache = run(model, False, tokens)
    caches = [*zip(_flat(fast_cache), _flat(mod_cache), _flat(ref_cache), strict=True)]
    if not expected or _bitwise_like_pytorch(ops):
        assert all(torch.equal(a, b) for a, b in zip(fast_logits, mod_logits, strict=True))
        assert all(torch.equal(f, m) for f, m, _ in caches)
        return
    assert_bf16_as_accurate(fast_logits, mod_logits, ref_logits, what="logits")
    assert assert_decisive_top1_agree(fast_logits, mod_logits, ref_logits) > 0
    for i, (f, m, r) in enumerate(caches):
        assert_bf16_as_accurate([f], [m], [r], what=f"layer {i // 2} {'kv'[i % 2]} cache")


@pytest.mark.parametrize("model_type", MODULE_PATH_ONLY)
def test_families_the_kernels_do_not_implement_keep_the_module_path(
    model_type: str, tmp_path: Path, monkeypatch
) -> None:
    """No kernel plan (``decode`` then runs the model's modules, which test_families.py
    checks against transformers), for fp32 and bf16 alike."""
    save_hf_model(fake_hf_config(model_type), tmp_path)
    monkeypatch.setattr(decode, "cpu_kernels", lambda: _ops("native"))
    for dtype in DTYPES:
        model = load_model(tmp_path, dtype=dtype, max_seq_len=48)
        assert plan_for(model, torch.tensor([[3]])) is None


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
    apply_recipe(model, get_recipe("dynamic-int8"))  # int8 activations: no kernel
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


def test_a_tensor_subclass_weight_goes_to_the_module_path(tiny_chat_model: Path) -> None:
    """torchao's quantized weights say float32 and contiguous, but their memory is not the
    float matrix: handing their data_ptr to the kernels read garbage (or crashed)."""
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerAxis
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    model = load_model(tiny_chat_model, max_seq_len=32)
    one = torch.tensor([[5]])
    assert plan_for(model, one) is not None
    config = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int8, weight_granularity=PerAxis(0)
    )
    quantize_(model, config, filter_fn=lambda m, _: isinstance(m, torch.nn.Linear))
    assert plan_for(model, one) is None
    with torch.no_grad():
        logits, _ = decode.decode(model, one, torch.tensor([0]), model.init_cache(1))
        reference = model(one, torch.tensor([0]), model.init_cache(1), end=1, inplace=True)[0]
    assert torch.equal(logits, reference)
