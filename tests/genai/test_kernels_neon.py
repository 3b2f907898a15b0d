"""famous's arm64 NEON paths of the int8-activation GEMV, built with Debian's aarch64 cross
compiler and run under qemu-user's emulation (not on arm64 hardware: this checks results
and instructions, not speed).

Three static builds of ``cpu_decode.c`` with a small driver: ``-march=armv8.2-a+dotprod``
(``sdot``), plain ``-march=armv8-a`` (``smull`` / ``smlal2`` / ``sadalp``) and the portable
C path (``FAMOUS_PORTABLE``). Each build's integer block dot products (int8 x int8 and int4
x int8, extremes included) equal numpy's int64 products exactly, its activation codes and
scales equal numpy's fp32 quantization exactly (ties to even included), and its GEMVs (int8 per
channel, int4 blocks of 32 and 128, with and without the fused RMSNorm) equal a float64
product of the same quantized activations and weights within fp32 rounding. The driver
includes the kernel source, so it reaches the file's static functions."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import famous.genai.kernels as kernels_pkg
from provision import aarch64_cross

SOURCE = Path(kernels_pkg.__file__).parent / "cpu_decode.c"
FLAGS = ["-O3", "-ffp-contract=off", "-std=gnu11", "-Wno-unknown-pragmas"]
BUILDS = {  # name -> (compiler flags, famous_kernels_q8_isa's answer)
    "dotprod": (["-march=armv8.2-a+dotprod"], "neon-dotprod"),
    "neon": (["-march=armv8-a"], "neon"),
    "portable": (["-march=armv8-a", "-DFAMOUS_PORTABLE"], "generic"),
}
Q_I8_ROW, Q_I4_BLK = 0, 1
FP32_U = 2.0**-24

DRIVER = r"""
#include "cpu_decode.c"
#include <stdio.h>

static void *slurp(const char *path, size_t size) {
    void *p = malloc(size ? size : 1);
    FILE *f = fopen(path, "rb");
    if (!f || fread(p, 1, size, f) != size) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    return p;
}

static void spill(const char *path, const void *p, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, size, f) != size) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* blocks I4 COUNT XQ W OUT: each block's integer dot product, through q8_row twice: in
 * groups of 4 blocks with one-hot factors (the 4-block path) and one block at a time. */
static int blocks(char **a) {
    int i4 = atoi(a[0]);
    int64_t count = atoll(a[1]), wb = i4 ? 16 : 32;
    int8_t *xq = slurp(a[2], (size_t)(32 * count));
    uint8_t *w = slurp(a[3], (size_t)(wb * count));
    int32_t *xc = malloc(sizeof(int32_t) * (size_t)count), *out = malloc(8 * (size_t)count);
    for (int64_t b = 0; b < count; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += xq[32 * b + i];
        xc[b] = -8 * s;
    }
    for (int64_t g = 0; g < count; g += 4)
        for (int j = 0; j < 4; j++) {
            float f[4] = {0, 0, 0, 0};
            f[j] = 1.0f;
            out[g + j] = (int32_t)q8_row(w + wb * g, i4, xq + 32 * g, xc + g, f, 4);
        }
    for (int64_t b = 0; b < count; b++) {
        float one = 1.0f;
        out[count + b] = (int32_t)q8_row(w + wb * b, i4, xq + 32 * b, xc + b, &one, 1);
    }
    spill(a[4], out, 8 * (size_t)count);
    return 0;
}

/* gemv QTYPE BLOCK N K M PREP EPS X NORM_W QW SCALE OUT: famous_linear_q, int8 activations */
static int gemv(char **a) {
    int qtype = atoi(a[0]), prep = atoi(a[5]);
    int64_t block = atoll(a[1]), n = atoll(a[2]), k = atoll(a[3]), m = atoll(a[4]);
    int64_t kp = qtype == Q_I4_BLK ? (k + block - 1) / block * block : k;
    size_t wbytes = qtype == Q_I4_BLK ? (size_t)(n * kp / 2) : (size_t)(n * k);
    size_t sbytes = qtype == Q_I4_BLK ? (size_t)(n * (kp / block)) * 2 : (size_t)n * 4;
    float *x = slurp(a[7], sizeof(float) * (size_t)(m * k));
    float *nw = slurp(a[8], sizeof(float) * (size_t)k);
    void *qw = slurp(a[9], wbytes), *scale = slurp(a[10], sbytes);
    float *y = malloc(sizeof(float) * (size_t)(m * n));
    famous_linear_q(x, qw, scale, qtype, block, 1, NULL, NULL, y, m, n, k, prep, nw,
                    (float)atof(a[6]), 0, 0, F32, 1);
    spill(a[11], y, sizeof(float) * (size_t)(m * n));
    return 0;
}

/* quant NB X OUT: one row of NB * 32 values to int8 blocks (codes, then fp32 scales) */
static int quant(char **a) {
    int64_t nb = atoll(a[0]);
    float *x = slurp(a[1], sizeof(float) * (size_t)(32 * nb));
    int8_t *out = malloc((size_t)(36 * nb));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)nb);
    float *d = malloc(sizeof(float) * (size_t)nb);
    quantize_row_q8(x, nb, out, d, c);
    memcpy(out + 32 * nb, d, sizeof(float) * (size_t)nb);
    spill(a[2], out, (size_t)(36 * nb));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "isa")) return puts(famous_kernels_q8_isa()) < 0;
    if (argc == 5 && !strcmp(argv[1], "quant")) return quant(argv + 2);
    if (argc == 7 && !strcmp(argv[1], "blocks")) return blocks(argv + 2);
    if (argc == 14 && !strcmp(argv[1], "gemv")) return gemv(argv + 2);
    fprintf(stderr, "usage: isa | blocks ... | gemv ...\n");
    return 2;
}
"""


def _check(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{what} failed (exit {result.returncode}): {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each build's command prefix (qemu-aarch64 and the static binary), and its assembly."""
    gcc, qemu = aarch64_cross()
    out = tmp_path_factory.mktemp("arm64")
    (out / "driver.c").write_text(DRIVER)
    inc = f"-I{SOURCE.parent}"
    jobs = []
    for name, (flags, _) in BUILDS.items():
        binary = ["-static", inc, str(out / "driver.c"), "-o", str(out / name), "-lm"]
        jobs.append(([str(gcc), *FLAGS, *flags, *binary], f"building {name}"))
        asm = ["-S", str(SOURCE), "-o", str(out / f"{name}.s")]
        jobs.append(([str(gcc), *FLAGS, *flags, *asm], f"compiling {name} to assembly"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda job: _check(*job), jobs))
    return {name: [str(qemu), str(out / name)] for name in BUILDS}


def _asm(run: list[str]) -> str:
    return Path(run[1] + ".s").read_text()


def test_each_build_names_its_integer_dot_product(arm64: dict[str, list[str]]) -> None:
    for name, (_, isa) in BUILDS.items():
        assert _check([*arm64[name], "isa"], f"{name} isa").strip() == isa, name


def test_the_builds_use_their_instructions(arm64: dict[str, list[str]]) -> None:
    dotprod, neon, portable = (_asm(arm64[n]).split() for n in ("dotprod", "neon", "portable"))
    assert "sdot" in dotprod
    assert "sdot" not in neon and "sdot" not in portable
    for instruction in ("smull", "smlal2", "sadalp"):
        assert instruction in neon, instruction
    assert "fcvtl" in dotprod and "fcvtl" in neon  # the fp16 scales widened four at once
    assert "fcvtns" in dotprod and "fcvtns" in neon  # the activations rounded four at once


def _blocks(i4: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random blocks and the extreme ones (|q| = 127 as quantization makes it; w = -128)."""
    count = 64
    xq = rng.integers(-127, 128, size=(count, 32), dtype=np.int8)
    if i4:
        w = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
        w[:4], xq[0], xq[1], xq[2], xq[3] = 0xFF, 127, -127, 127, -127
        w[2:4] = 0
    else:
        w = rng.integers(-128, 128, size=(count, 32), dtype=np.int8)
        w[:4], xq[:4] = -128, -127
        w[1], xq[2], w[3] = 127, 127, 127
    return xq, w


def _block_dots(xq: np.ndarray, w: np.ndarray, i4: bool) -> np.ndarray:
    if i4:  # byte j: value j in the low nibble, value j + 16 in the high one, stored q + 8
        codes = np.concatenate([w & 0x0F, w >> 4], axis=1).astype(np.int64) - 8
    else:
        codes = w.astype(np.int64)
    return (codes * xq.astype(np.int64)).sum(axis=1)


@pytest.mark.parametrize("i4", [False, True], ids=["int8", "int4"])
def test_integer_block_products_are_exact(
    arm64: dict[str, list[str]], tmp_path: Path, i4: bool
) -> None:
    xq, w = _blocks(i4, np.random.default_rng(7))
    xq.tofile(tmp_path / "xq.bin")
    w.tofile(tmp_path / "w.bin")
    want = _block_dots(xq, w, i4)
    for name, run in arm64.items():
        out = tmp_path / f"{name}.bin"
        files = [str(tmp_path / "xq.bin"), str(tmp_path / "w.bin"), str(out)]
        _check([*run, "blocks", str(int(i4)), str(len(xq)), *files], f"{name} blocks")
        got = np.fromfile(out, dtype=np.int32).reshape(2, -1)
        np.testing.assert_array_equal(got[0], want, err_msg=f"{name}: 4-block path")
        np.testing.assert_array_equal(got[1], want, err_msg=f"{name}: one block")


def _prepared(x: np.ndarray, norm_w: np.ndarray, eps: np.float32, rms: bool) -> np.ndarray:
    """The GEMV's fp32 input, as cpu_decode.c's rms_row computes it (double sum of squares,
    summed in order; the rest in fp32)."""
    if not rms:
        return x
    out = np.empty_like(x)
    for r, row in enumerate(x):
        ms = np.float32(np.cumsum(row.astype(np.float64) ** 2)[-1] / row.size)
        s = np.float32(1.0) / np.sqrt(ms + eps)
        out[r] = norm_w * (row * s)
    return out


def _quantize(xf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 blocks of 32 as cpu_decode.c specifies: d = max|x| / 127, q = rint(x / d)."""
    blocks = xf.reshape(xf.shape[0], -1, 32)
    d = (np.abs(blocks).max(axis=2) / np.float32(127)).astype(np.float32)
    safe = np.where(d == 0, np.float32(1), d)[..., None]
    q = np.where(d[..., None] == 0, 0, np.rint(blocks / safe)).astype(np.int64)
    return q, d


def test_activations_quantize_as_specified(arm64: dict[str, list[str]], tmp_path: Path) -> None:
    """Codes and scales equal numpy's fp32 rint(x / (max|x| / 127)) exactly, ties included."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1, 8 * 32)) * 3).astype(np.float32)
    x[0, 32:64] = 0  # scale 0: codes 0
    x[0, 64] = np.float32(127 / 2)  # so this block's d is 0.5 ...
    x[0, 65:96] = np.arange(-15, 16, dtype=np.float32) / 2 + 0.25  # ... and x / d is n + 1/2
    x.tofile(tmp_path / "x.bin")
    want_q, want_d = _quantize(x)
    assert want_d[0, 2] == 0.5 and ((x[0, 65:96] / want_d[0, 2]) % 1 == 0.5).all()
    for name, run in arm64.items():
        out = tmp_path / f"{name}-q.bin"
        _check([*run, "quant", "8", str(tmp_path / "x.bin"), str(out)], f"{name} quant")
        raw = out.read_bytes()
        got_q = np.frombuffer(raw[: 8 * 32], dtype=np.int8).reshape(8, 32)
        got_d = np.frombuffer(raw[8 * 32 :], dtype=np.float32)
        np.testing.assert_array_equal(got_q, want_q[0], err_msg=f"{name}: codes")
        np.testing.assert_array_equal(got_d, want_d[0], err_msg=f"{name}: scales")


def _reference(qtype, block, qw, scale, xf, k) -> tuple[np.ndarray, np.ndarray]:
    """float64 products of the quantized activations and weights (the per-block fp32
    factors rounded as the kernel rounds them) and the sums of their magnitudes."""
    q, d = _quantize(xf)  # [m, nb, 32], [m, nb]
    n = qw.shape[0]
    if qtype == Q_I4_BLK:
        g = qw.reshape(n, -1, 16)
        codes = np.concatenate([g & 0x0F, g >> 4], axis=2).astype(np.int64) - 8
        dots = np.einsum("nbi,mbi->mnb", codes, q)
        w_scale = np.repeat(scale.astype(np.float32), block // 32, axis=1)  # [n, nb]
        terms = dots * (w_scale[None] * d[:, None, :]).astype(np.float64)
        return terms.sum(axis=2), np.abs(terms).sum(axis=2)
    padded = np.zeros((n, q.shape[1] * 32), dtype=np.int64)
    padded[:, :k] = qw
    dots = np.einsum("nbi,mbi->mnb", padded.reshape(n, -1, 32), q)
    terms = dots * d[:, None, :].astype(np.float64) * scale.astype(np.float64)[None, :, None]
    return terms.sum(axis=2), np.abs(terms).sum(axis=2)


CASES = {  # name -> (qtype, block, n, k)
    "int8": (Q_I8_ROW, 32, 9, 300),
    "int4-b32": (Q_I4_BLK, 32, 7, 300),
    "int4-b128": (Q_I4_BLK, 128, 6, 300),
}


@pytest.mark.parametrize("rms", [False, True], ids=["plain", "rmsnorm"])
@pytest.mark.parametrize("case", list(CASES))
def test_gemv_matches_the_float64_product(
    arm64: dict[str, list[str]], tmp_path: Path, case: str, rms: bool
) -> None:
    qtype, block, n, k = CASES[case]
    m, eps = 2, np.float32(1e-5)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[1, 32:64] = 0  # an all-zero block: scale 0, codes 0
    norm_w = (1 + 0.1 * rng.standard_normal(k)).astype(np.float32)
    if qtype == Q_I4_BLK:
        kp = -(-k // block) * block
        qw = rng.integers(0, 256, size=(n, kp // 2), dtype=np.uint8)
        scale = (0.01 * rng.standard_normal((n, kp // block))).astype(np.float16)
    else:
        kp = k
        qw = rng.integers(-127, 128, size=(n, k), dtype=np.int8)
        scale = (0.01 * rng.uniform(0.5, 1.5, n)).astype(np.float32)
    for name, array in {"x": x, "nw": norm_w, "qw": qw, "scale": scale}.items():
        array.tofile(tmp_path / f"{name}.bin")
    xf = np.zeros((m, -(-kp // 32) * 32), dtype=np.float32)
    xf[:, :k] = _prepared(x, norm_w, eps, rms)
    want, size = _reference(qtype, block, qw, scale, xf, k)
    bound = 2 * (xf.shape[1] // 32 + 2) * FP32_U * size
    files = [str(tmp_path / f"{f}.bin") for f in ("x", "nw", "qw", "scale")]
    for name, run in arm64.items():
        out = tmp_path / f"{name}-y.bin"
        shape = [str(v) for v in (qtype, block, n, k, m, int(rms), eps)]
        _check([*run, "gemv", *shape, *files, str(out)], f"{name} gemv")
        got = np.fromfile(out, dtype=np.float32).reshape(m, n)
        err = np.abs(got - want)
        assert (err <= bound).all(), f"{name} {case}: error {err.max():.3g} over {bound.max():.3g}"
