"""famous's quantized decode GEMV (int8 per output channel, int4 in blocks of 32 / 128):
on every build this CPU runs, it equals PyTorch's fp32 product of the dequantized weights
within fp32 rounding (bf16 activations: plus the output's bf16 rounding); the norm and
activation fusions; the int4 layout byte by byte; the AVX-512 path compiles; and a
quantized model decodes through the kernels as through its modules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from genai_helpers import BF16_U, decode_tokens

from famous.genai import kernels
from famous.genai.kernels import decode
from famous.genai.kernels.decode import _quant_matrix, plan_for
from famous.genai.layers.norm import RMSNorm
from famous.genai.loader import load_model
from famous.genai.quantize import QuantSpec, get_recipe
from famous.genai.quantize.modules import QuantizedWeight, apply_recipe

RUNNABLE = [t for t in kernels.TARGETS if kernels.can_run(t)]
SCHEMES = {
    "int8": QuantSpec(dtype="int8"),
    "int4-b32": QuantSpec(dtype="int4", block_size=32),
    "int4-b128": QuantSpec(dtype="int4", block_size=128),
}
FP32_U = 2.0**-24


def _ops(target: str) -> kernels.CpuKernels:
    return kernels.load_kernels(target)


def _quantized(n: int, k: int, scheme: str, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g).to(dtype)
    qw = QuantizedWeight(w, SCHEMES[scheme])
    qm = _quant_matrix(qw, dtype)
    assert qm is not None, f"{scheme} is one of the kernels' schemes"
    return qw, qm, g


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(("n", "k"), [(7, 300), (64, 576), (33, 64), (5, 40), (9, 264)])
def test_quantized_gemv_is_the_dequantized_fp32_product(
    target: str, dtype: torch.dtype, scheme: str, n: int, k: int
) -> None:
    """``r + (x @ dequantize(W).T + b)``: within fp32 summation error (k + 2 roundings of
    ``|x| @ |W|.T``) of the exact product; bf16 outputs also round once (and once more with
    the residual), as the float GEMV rounds them. k not a multiple of the block pads."""
    qw, qm, g = _quantized(n, k, scheme, dtype, n * k)
    x = torch.randn(1, 1, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    r = torch.randn(1, 1, n, generator=g).to(dtype)
    w64 = qw.dequantize(torch.float32).double()
    assert w64.shape == (n, k)
    ops = _ops(target)
    exact = F.linear(x.double(), w64, b.double())
    summed = (k + 2) * FP32_U * (x.double().abs() @ w64.abs().T)
    out_u = FP32_U if dtype == torch.float32 else BF16_U
    for got, want, bound in (
        (ops.linear(x, qm, b), exact, summed + out_u * exact.abs()),
        (
            ops.linear(x, qm, b, residual=r),
            r.double() + exact,
            summed * 2 + out_u * (exact.abs() + (r.double() + exact).abs()),
        ),
    ):
        assert got.dtype == dtype and got.shape == (1, 1, n)
        err = (got.double() - want).abs()
        assert (err <= bound * 1.02 + 1e-30).all(), f"worst {float((err / bound).max()):.2f} x"


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_norm_and_activation_fused_into_the_quantized_gemv(target: str, scheme: str) -> None:
    """The fusions of the float GEMV (RMSNorm before, gated or plain activation of the
    input) apply unchanged: PyTorch's modules on the dequantized weights, in fp32."""
    qw, qm, g = _quantized(48, 256, scheme, torch.float32, 11)
    w = qw.dequantize(torch.float32)
    ops = _ops(target)
    norm = RMSNorm(256, 1e-6, False)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.1, generator=g)
        x = torch.randn(1, 256, generator=g) * 3
        h = torch.randn(1, 512, generator=g)
        fused = ops.linear(x, qm, norm=(norm.weight, norm.eps, False))
        torch.testing.assert_close(fused, F.linear(norm(x), w), atol=2e-5, rtol=1e-5)
        gate, up = h.split(256, dim=-1)
        gated = ops.linear(h, qm, activation=("silu", True))
        torch.testing.assert_close(gated, F.linear(F.silu(gate) * up, w), atol=1e-4, rtol=1e-5)
        plain = ops.linear(gate, qm, activation=("gelu_tanh", False))
        want = F.linear(F.gelu(gate, approximate="tanh"), w)
        torch.testing.assert_close(plain, want, atol=1e-4, rtol=1e-5)
        rows = torch.randn(3, 256, generator=g)  # a few rows: each its own GEMV
        torch.testing.assert_close(ops.linear(rows, qm), F.linear(rows, w), atol=2e-5, rtol=1e-5)


BEST_FIRST = ("avx512-bf16", "avx512", "avx2")


def test_the_portable_and_the_best_path_of_this_cpu_both_ran() -> None:
    """The paths this CPU executes all run the same product (no path is skipped: the
    list is what the CPU supports); at least the portable build and the best one, which
    is the native build's, are among them."""
    qw, qm, g = _quantized(21, 320, "int4-b32", torch.float32, 3)
    x = torch.randn(320, generator=g)
    want = F.linear(x, qw.dequantize(torch.float32))
    ran = {}
    for target in RUNNABLE:
        ops = _ops(target)
        torch.testing.assert_close(ops.linear(x, qm), want, atol=2e-5, rtol=1e-5)
        ran[target] = ops.isa
    best = next((t for t in BEST_FIRST if t in kernels.TARGETS and kernels.can_run(t)), "generic")
    assert "generic" in ran and best in ran
    if best != "generic":
        assert ran["native"] == ran[best] == best


def test_the_avx512_path_compiles_with_avx512f_and_bw(tmp_path: Path) -> None:
    """The AVX-512 code needs only AVX-512 F and BW: compiled with just those flags, the
    quantized GEMV is built from 512-bit conversions and fused multiply-adds (a CPU without
    AVX-512 proves the code builds; CPUs with it run it in the tests above)."""
    cc = kernels._compiler()
    assert cc is not None
    asm = tmp_path / "cpu_decode.s"
    cmd = [cc, *kernels._COMMON, "-mavx512f", "-mavx512bw", "-S", str(kernels.SOURCE)]
    subprocess.run([*cmd, "-o", str(asm)], check=True, capture_output=True, timeout=300)
    text = asm.read_text()
    assert "vpmovsxbd" in text and "%zmm" in text
    body = text[text.index("dot4_i4:") : text.index(".size\tdot4_i4")]
    assert "vcvtdq2ps\t%zmm" in body and "vfmadd231ps\t%zmm" in body


def test_int4_rows_are_stored_as_the_gemv_streams_them() -> None:
    """Weights that are exact multiples of a power-of-two scale: each 32-value group of a
    row is 16 bytes, byte j holding value j + 8 (low nibble) and value j + 16 + 8 (high
    nibble); fp16 scales per row and block; the round trip is exact."""
    g = torch.Generator().manual_seed(9)
    q = torch.randint(-7, 8, (3, 64), generator=g)
    q[:, 0] = 7  # every block's largest magnitude is 7: the scale is exactly 0.5
    q[:, 32] = -7
    qw = QuantizedWeight(q.float() * 0.5, QuantSpec(dtype="int4", block_size=32))
    assert qw.data.dtype == torch.uint8 and qw.data.shape == (3, 32)
    assert qw.scale.dtype == torch.float16 and qw.scale.reshape(3, 2).eq(0.5).all()
    u = (q + 8).to(torch.uint8)
    for r in range(3):
        for grp in range(2):
            for j in range(16):
                byte = int(qw.data[r, grp * 16 + j])
                assert byte & 15 == u[r, grp * 32 + j] and byte >> 4 == u[r, grp * 32 + 16 + j]
    assert torch.equal(qw.dequantize(torch.float32), q.float() * 0.5)


@pytest.mark.parametrize("recipe", ["int8", "int4", "int4-b128", "q4_0"])
def test_a_quantized_model_decodes_through_the_kernels(
    recipe: str, tiny_chat_model: Path, monkeypatch
) -> None:
    """int8 / int4 recipes qualify for the kernels (the stored buffers are what they
    read) and decode the module path's greedy tokens with its logits within fp32
    rounding; dynamic int8, int8 blocks and fp16 casts keep the module path."""
    model = load_model(tiny_chat_model, max_seq_len=40)
    apply_recipe(model, get_recipe(recipe))
    ids = torch.randint(3, 200, (1, 12), generator=torch.Generator().manual_seed(2))
    ops = kernels.cpu_kernels()
    monkeypatch.setattr(decode, "cpu_kernels", lambda: ops)
    assert plan_for(model, ids[:, :1]) is not None
    fast_tokens, fast, _ = decode_tokens(model, ids, 12)
    monkeypatch.setattr(decode, "cpu_kernels", lambda: None)
    ref_tokens, ref, _ = decode_tokens(model, ids, 12, fast_tokens)
    assert fast_tokens == ref_tokens
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("recipe", ["dynamic-int8", "q8_0", "fp16"])
def test_schemes_without_a_kernel_keep_the_module_path(recipe: str, tiny_chat_model: Path) -> None:
    model = load_model(tiny_chat_model, max_seq_len=32)
    apply_recipe(model, get_recipe(recipe))
    assert plan_for(model, torch.tensor([[5]])) is None


def test_prefill_dequantizes_each_weight_once_per_call(tiny_chat_model: Path, monkeypatch) -> None:
    """A prompt of 16 tokens dequantizes each quantized weight at most once (one batched
    matmul per projection), not once per token."""
    model = load_model(tiny_chat_model, max_seq_len=32)
    apply_recipe(model, get_recipe("int8"))
    cache = model.init_cache(1)
    calls: list[int] = []
    real = QuantizedWeight.dequantize
    monkeypatch.setattr(
        QuantizedWeight, "dequantize", lambda s, *a: calls.append(id(s)) or real(s, *a)
    )
    with torch.no_grad():
        model(torch.arange(3, 19)[None], torch.arange(16), cache, end=16, inplace=True)
    blocks = sum(isinstance(m, QuantizedWeight) for m in model.layers.modules())
    assert len(calls) >= blocks and max(calls.count(c) for c in calls) == 1
