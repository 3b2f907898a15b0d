"""famous's quantized decode GEMV (int8 per output channel, int4 in blocks of 32 / 128):
on every build this CPU runs, the weight-only path equals PyTorch's fp32 product of the
dequantized weights within fp32 rounding (bf16 activations: plus the output's bf16
rounding); the norm and activation fusions; the int4 layout byte by byte; the AVX-512 path
compiles; and a quantized model decodes through the kernels as through its modules.

The int8-activation path (the default: the input quantized to int8 blocks of 32, integer
dot products): the activations are quantized exactly as ``cpu_decode.c`` specifies
(checked against PyTorch), the integer part of each block is exact (no int16 saturation),
the result is PyTorch's float64 product of the dequantized weights and the dequantized
activations within fp32 rounding; the AVX2, AVX-VNNI and AVX-512 (VNNI) paths compile to
their instructions; and a model decoding this way stays within a stated KL of the
weight-only path and of the fp32 model."""

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
from famous.genai.quality import kl_top1
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


def _quantized(n: int, k: int, scheme: str, dtype: torch.dtype, seed: int, int8_act=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g).to(dtype)
    qw = QuantizedWeight(w, SCHEMES[scheme])
    qm = _quant_matrix(qw, dtype, int8_act)
    assert qm is not None, f"{scheme} is one of the kernels' schemes"
    return qw, qm, g


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("act", ["exact", "int8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(("n", "k"), [(7, 300), (64, 576), (33, 64), (5, 40), (9, 264)])
def test_quantized_gemv_is_the_dequantized_fp32_product(
    target: str, act: str, dtype: torch.dtype, scheme: str, n: int, k: int
) -> None:
    """``r + (x @ dequantize(W).T + b)``, x as given (weight-only path: within fp32
    summation error, k + 2 roundings of ``|x| @ |W|.T``) or as PyTorch quantizes it by the
    kernels' rule (int8 activations: the blocks' integer sums are exact, so one rounding
    per block factor, per block's multiply-add and per lane sum remain: blocks + 12);
    bf16 outputs also round once (and once more with the residual), as the float GEMV
    rounds them. k not a multiple of the block pads."""
    qw, qm, g = _quantized(n, k, scheme, dtype, n * k, act == "int8")
    x = torch.randn(1, 1, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    r = torch.randn(1, 1, n, generator=g).to(dtype)
    w64 = qw.dequantize(torch.float32).double()
    assert w64.shape == (n, k)
    ops = _ops(target)
    x64 = x.double() if act == "exact" else quantize_activations(x)
    exact = F.linear(x64, w64, b.double())
    steps = k + 2 if act == "exact" else -(-k // 32) + 12
    summed = steps * FP32_U * (x64.abs() @ w64.abs().T)
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
    rounding (the weight-only path, FAMOUS_QUANT_ACTIVATIONS=exact; the default int8
    activations are test_q8_kernels.py's); dynamic int8, int8 blocks and fp16 casts keep
    the module path."""
    monkeypatch.setenv("FAMOUS_QUANT_ACTIVATIONS", "exact")
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


# ------------------------------------------------------------ int8 activations


def q8_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernels' rule, written in PyTorch: blocks of 32 (zero padded), d = max|x| / 127
    in fp32, q = round-half-even(x / d) (fp32 division), q = 0 where d = 0. Returns q and
    each value's d (fp32, the shape of x)."""
    k = x.shape[-1]
    xp = F.pad(x.float(), (0, (-k) % 32)).reshape(*x.shape[:-1], -1, 32)
    d = xp.abs().amax(-1, keepdim=True) / 127.0
    q = torch.where(d > 0, torch.round(xp / torch.where(d > 0, d, 1.0)), 0.0)
    assert q.abs().max() <= 127
    return q.flatten(-2)[..., :k], d.expand_as(xp).flatten(-2)[..., :k]


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """The dequantized activations q * d (exact in float64)."""
    q, d = q8_parts(x)
    return q.double() * d.double()


def _q8(qw: QuantizedWeight, dtype: torch.dtype) -> kernels.QuantMatrix:
    qm = _quant_matrix(qw, dtype, int8_act=True)
    assert qm is not None and qm.int8_act
    return qm


@pytest.mark.parametrize("target", RUNNABLE)
def test_activations_are_quantized_as_specified(target: str) -> None:
    """One-hot int8 rows (a 127 on the diagonal: the row scale is exactly 1) turn the GEMV
    into the dequantized activations themselves, bit for bit against PyTorch's rule: ties
    round to even, an all-zero block stays zero, a partial last block is zero padded."""
    k = 72  # two whole blocks and a partial one
    x = torch.randn(k, generator=torch.Generator().manual_seed(4)) * 3
    x[:8] = torch.tensor([127.0, 2.5, 3.5, -2.5, 0.5, -0.5, 1.5, 126.5])  # d = 1: ties
    x[32:64] = 0.0
    x[64] = 1e-3
    qw = QuantizedWeight(torch.eye(k), SCHEMES["int8"])  # codes 127, row scales 1 / 127
    ops = kernels.load_kernels(target)
    got = ops.linear(x, _q8(qw, torch.float32))
    q, d = q8_parts(x)
    assert q[:8].tolist() == [127, 2, 4, -2, 0, -0, 2, 126] and q[32:64].eq(0).all()
    # the one non-zero product of each row, 127 q, times d, times the row's scale
    want = (q * 127).float() * d * qw.scale.reshape(-1)
    assert torch.equal(got, want)


def _exact_case(scheme: str, n: int, k: int, seed: int):
    """Codes and power-of-two scales that the quantizers give back exactly, with the
    extremes (int8 -127 x -127 pairs, int4 rows of -7 and of 7 against +-127) in every row:
    every float step of the kernel is then exact, so its output is the integer dot
    product times the scales, with nothing to round."""
    g = torch.Generator().manual_seed(seed)
    kp = -(-k // 32) * 32
    qx = torch.randint(-127, 128, (kp,), generator=g)
    qx[::32] = -127  # each block's largest magnitude is 127: d = 2^-2 exactly
    qx[k:] = 0
    qx[(k - 1) // 32 * 32] = -127  # the partial last block too
    qx[:64] = -127  # against a row of -127: pairs of 2 * 127^2 in vpmaddubsw's int16
    if scheme == "int8":
        qw = torch.randint(-127, 128, (n, k), generator=g)
        qw[:, 0] = -127  # row scale 2^-3 exactly
        qw[0] = -127
    else:
        b = int(SCHEMES[scheme].block_size)
        qw = torch.randint(-7, 8, (n, -(-k // b) * b), generator=g)
        qw[:, ::b] = -7  # every block's scale 2^-3 exactly (max |q| = 7)
        qw[0], qw[1] = -7, 7
        qw = qw[:, :k]
    w = qw.float() * 2.0**-3
    x = qx[:k].float() * 2.0**-2
    want = (qw.long() @ qx[:k].long()).double() * 2.0**-5
    return w, x, want


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(("n", "k"), [(6, 256), (5, 300), (9, 2048)])
def test_the_integer_part_is_exact(target: str, scheme: str, n: int, k: int) -> None:
    w, x, want = _exact_case(scheme, n, k, n + k)
    qw = QuantizedWeight(w, SCHEMES[scheme])
    assert torch.equal(qw.dequantize(torch.float32), w)
    assert torch.equal(quantize_activations(x), x.double())
    got = kernels.load_kernels(target).linear(x, _q8(qw, torch.float32))
    assert torch.equal(got.double(), want)


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("scheme", ["int8", "int4-b32"])
def test_fusions_quantize_the_prepared_input(target: str, scheme: str) -> None:
    """The norm / activation runs first, in fp32, and its output is what is quantized."""
    g = torch.Generator().manual_seed(5)
    qw = QuantizedWeight(torch.randn(40, 256, generator=g), SCHEMES[scheme])
    w, qm, ops = qw.dequantize(torch.float32).double(), _q8(qw, torch.float32), None
    ops = kernels.load_kernels(target)
    norm = RMSNorm(256, 1e-6, False)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.1, generator=g)
        x, h = torch.randn(1, 256, generator=g) * 3, torch.randn(1, 512, generator=g)
        gate, up = h.split(256, dim=-1)
        cases = [
            (ops.linear(x, qm, norm=(norm.weight, norm.eps, False)), norm(x)),
            (ops.linear(h, qm, activation=("silu", True)), F.silu(gate) * up),
        ]
        for got, prepared in cases:
            want = quantize_activations(prepared) @ w.T
            torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)


def test_the_native_build_reports_its_integer_dot_product() -> None:
    """This CPU's best path runs in the native build, and the portable one in the generic."""
    native = kernels.load_kernels("native").q8_isa
    assert kernels.load_kernels("generic").q8_isa == "generic"
    best = next(
        (
            q
            for t, q in (
                ("avx512-vnni", "avx512-vnni"),
                ("avx2-vnni", "avx-vnni"),
                ("avx2", "avx2"),
            )
            if t in kernels.TARGETS and kernels.can_run(t)
        ),
        "generic",
    )
    assert native in {best, "avx512-vnni", "avx-vnni"} and (native != "generic" or best == native)


# target → (instructions its int8-activation code must contain, instructions it must not)
ASM = {
    "avx2": ({"vpmaddubsw", "vpmaddwd", "vpsignb", "vpsrlvq"}, {"vpdpbusd"}),
    "avx2-vnni": ({"{vex} vpdpbusd", "vpsignb"}, {"vpmaddubsw\t%ymm"}),
    "avx512": ({"vpmaddubsw", "vpmaddwd", "vpsignb"}, {"vpdpbusd"}),
    "avx512-vnni": ({"vpdpbusd\t", "vpsignb"}, {"{vex} vpdpbusd", "vpmaddubsw\t%ymm"}),
}


@pytest.mark.parametrize("target", [t for t in ASM if t in kernels.TARGETS])
def test_each_x86_path_compiles_to_its_integer_dot_product(target: str, tmp_path: Path) -> None:
    """Compiled for each x86 target (any x86 CPU compiles them; those it can run, run
    above), famous_linear_q's code holds that path's instructions: vpmaddubsw + vpmaddwd
    on AVX2 / AVX-512 without VNNI, VEX vpdpbusd with AVX-VNNI, EVEX vpdpbusd with
    AVX512-VNNI."""
    cc = kernels._compiler()
    assert cc is not None
    asm = tmp_path / "cpu_decode.s"
    flags = kernels.TARGETS[target].arches[0]
    cmd = [cc, *kernels._COMMON, *flags, "-fopenmp", "-S", str(kernels.SOURCE), "-o", str(asm)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    text = asm.read_text()
    start = text.index("famous_linear_q._omp_fn.0:")
    body = text[start : text.index(".size\tfamous_linear_q._omp_fn.0", start)]
    must, must_not = ASM[target]
    assert all(op in body for op in must), [op for op in must if op not in body]
    assert not any(op in body for op in must_not)


def _teacher_forced(model, ids: torch.Tensor, forced: list[int]) -> torch.Tensor:
    return torch.stack(decode_tokens(model, ids, len(forced), forced)[1])


@pytest.mark.parametrize("recipe", ["int8", "int4"])
def test_int8_activations_keep_the_model_close(
    recipe: str, tiny_chat_model: Path, monkeypatch
) -> None:
    """Teacher-forced decoding of the same 24 tokens: the int8-activation path is the
    default, its logits are within a KL (mean nats per token) of 1e-5 of the weight-only
    path's, and its KL to the fp32 model exceeds the weight-only path's by less than 1e-5
    (measured here: 4.5e-7 for both recipes; the weight-only paths' own KL to fp32 is
    1.3e-6 for int8 and 1.1e-4 for int4)."""
    g = torch.Generator().manual_seed(3)
    ids, forced = (
        torch.randint(3, 200, (1, 8), generator=g),
        torch.randint(3, 200, (24,), generator=g),
    )
    fp32 = load_model(tiny_chat_model, max_seq_len=40)
    monkeypatch.delenv("FAMOUS_QUANT_ACTIVATIONS", raising=False)
    ref = _teacher_forced(fp32, ids, forced.tolist())
    model = load_model(tiny_chat_model, max_seq_len=40)
    apply_recipe(model, get_recipe(recipe))
    plan = plan_for(model, ids[:, :1])
    assert plan is not None and plan.layers[0].qkv[0].int8_act  # the default
    q8 = _teacher_forced(model, ids, forced.tolist())
    monkeypatch.setenv("FAMOUS_QUANT_ACTIVATIONS", "exact")
    assert not plan_for(model, ids[:, :1]).layers[0].qkv[0].int8_act
    exact = _teacher_forced(model, ids, forced.tolist())
    kl_q8_exact, top1 = kl_top1([exact], [q8])
    kl_exact_fp32 = kl_top1([ref], [exact])[0]
    kl_q8_fp32 = kl_top1([ref], [q8])[0]
    print(
        f"{recipe}: KL(q8|exact) {kl_q8_exact:.2e}  KL(exact|fp32) {kl_exact_fp32:.2e}  "
        f"KL(q8|fp32) {kl_q8_fp32:.2e}  top-1 vs exact {top1:.3f}"
    )
    assert 0 < kl_q8_exact < 1e-5 and top1 >= 0.9
    assert kl_q8_fp32 < kl_exact_fp32 + 1e-5
    monkeypatch.setenv("FAMOUS_QUANT_ACTIVATIONS", "fp16")
    with pytest.raises(ValueError, match="FAMOUS_QUANT_ACTIVATIONS"):
        plan_for(model, ids[:, :1])
