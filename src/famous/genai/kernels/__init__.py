"""famous's CPU decode kernels (``cpu_decode.c``), compiled for this machine on first use.

Decoding one token on a CPU is bound by how fast the weights stream from memory. The C
kernels read each weight once at close to the machine's bandwidth and fuse the small
per-token ops; ``famous.genai.kernels.decode`` composes them into a decoder step.

The source is compiled with the system C compiler (``$CC``, else ``cc`` / ``gcc`` /
``clang``) with ``-O3 -march=native -ffp-contract=off`` and OpenMP, into the user cache
(``~/.cache/famous/kernels``, one file per source × compiler × flags, and CPU for the
native build), and loaded with ``ctypes``. Without a compiler, or with
``FAMOUS_NATIVE_KERNELS=0``, ``cpu_kernels()`` is ``None`` and famous runs the same model
with PyTorch's own ops.

Decoding always uses the native build. The named targets of ``TARGETS`` exist so that the
code paths of other CPUs can be compiled (``build_kernels``) and, where this CPU can run
them (``can_run``), executed (``load_kernels``) on any machine.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_decode.c")
ABI = 7
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
ACTIVATIONS = {"silu": 0, "gelu_tanh": 1, "gelu": 2, "relu": 3}
PREP_NONE, PREP_RMS, PREP_GATED, PREP_ACT = 0, 1, 2, 3
Q_I8_ROW, Q_I4_BLK = 0, 1  # the quantized layouts of cpu_decode.c

_P, _L, _F, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "famous_kernels_abi": ([], _I),
    "famous_kernels_isa": ([], ctypes.c_char_p),
    "famous_kernels_q8_isa": ([], ctypes.c_char_p),
    "famous_linear": ([_P, _P, _P, _P, _P, _L, _L, _L, _I, _P, _F, _I, _I, _I, _I], None),
    "famous_linear_q": (
        [_P, _P, _P, _I, _L, _I, _P, _P, _P, _L, _L, _L, _I, _P, _F, _I, _I, _I, _I],
        None,
    ),
    "famous_rms_norm": ([_P, _P, _P, _L, _L, _F, _I, _I], None),
    "famous_attention_decode": (
        [
            *(_P, _P, _P, _L),  # qkv, cos, sin, rotary dims
            *(_P, _P, _F, _I),  # q norm, k norm, eps, zero-centred
            *(_P, _P, _L, _L, _L, _L),  # k cache, v cache, slots, pos, start, end
            *(_P, _L, _L, _L, _F, _F),  # out, heads, kv heads, head dim, scale, softcap
            *(_I, _I, _I),  # attend, dtype, threads
        ],
        None,
    ),
}

# Flags every build shares: the compiler fuses no multiply-add (the source says where it
# fuses on purpose), so the builds of one machine agree where cpu_decode.c says they do.
_COMMON = ["-O3", "-ffp-contract=off", "-std=gnu11", "-shared", "-fPIC"]


class Target(NamedTuple):
    arches: tuple[list[str], ...]  # the -march flags to try, best first
    needs: frozenset[str]  # the /proc/cpuinfo flags its instructions need ({}: any CPU)


_X86_V3 = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})
_X86_V4 = _X86_V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
_NATIVE = Target((["-march=native"], ["-mcpu=native"], []), frozenset())
_GENERIC = Target(([],), frozenset())  # the compiler's baseline: the portable (#else) paths

# "native" is what decoding uses; the others name the code paths of other CPUs
TARGETS: dict[str, Target] = (
    {
        "native": _NATIVE,
        "avx512-bf16": Target((["-march=x86-64-v4", "-mavx512bf16"],), _X86_V4 | {"avx512_bf16"}),
        "avx512": Target((["-march=x86-64-v4"],), _X86_V4),
        "avx512-vnni": Target((["-march=x86-64-v4", "-mavx512vnni"],), _X86_V4 | {"avx512_vnni"}),
        "avx2-vnni": Target((["-march=x86-64-v3", "-mavxvnni"],), _X86_V3 | {"avx_vnni"}),
        "avx2": Target((["-march=x86-64-v3"],), _X86_V3),
        "generic": _GENERIC,
    }
    if platform.machine().lower() in ("x86_64", "amd64")
    else {"native": _NATIVE, "generic": _GENERIC}
)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    wanted = {"model name", "flags", "Features"}
    keep = [ln for ln in _cpuinfo() if ln.split(":")[0].strip() in wanted]
    return "\n".join(sorted(set(keep))) or platform.processor() or platform.machine()


def can_run(target: str) -> bool:
    """Whether this CPU executes code built for ``target`` (by its /proc/cpuinfo flags;
    where there is none, only the native and generic builds are known to run)."""
    needs = TARGETS[target].needs
    if not needs:
        return True
    flags = next((ln.split(":", 1)[1].split() for ln in _cpuinfo() if ln.startswith("flags")), [])
    return needs <= set(flags)


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("FAMOUS_KERNEL_CACHE") or user_cache_dir("famous")) / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compile(cc: str, out: Path, arches: tuple[list[str], ...]) -> None:
    """Try the best flags first; a compiler without OpenMP (or, for the native build,
    without -march=native) still builds single-threaded (or generic) code."""
    errors = []
    for arch in arches:
        for omp in (["-fopenmp"], []):
            with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".so", delete=False) as f:
                tmp = Path(f.name)
            cmd = [cc, *_COMMON, *arch, *omp, str(SOURCE), "-o", str(tmp), "-lm"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode == 0:
                if not omp:
                    log.warning("famous kernels built without OpenMP: decoding uses one thread")
                os.replace(tmp, out)  # atomic: concurrent builds of the same key are harmless
                return
            tmp.unlink(missing_ok=True)
            errors.append(f"{' '.join(cmd)}: {r.stderr.strip()[-400:]}")
    raise RuntimeError("cannot compile famous's CPU kernels:\n" + "\n".join(errors))


def build_kernels(target: str = "native") -> Path:
    """The shared library built for ``target`` (compiled unless cached). Raises
    RuntimeError without a compiler or when the build fails; any CPU can build any target
    of its architecture, but only run those ``can_run`` accepts."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found")
    arches = TARGETS[target].arches
    machine = _cpu_signature() if target == "native" else ""
    parts = [SOURCE.read_bytes(), cc.encode(), platform.machine().encode(), machine.encode()]
    parts += [" ".join(_COMMON + a).encode() for a in arches]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    directory = _cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = Path(tempfile.mkdtemp(prefix="famous-kernels-"))
    path = directory / f"cpu_decode-{target}-{key}.so"
    if not path.exists():
        _compile(cc, path, arches)
    return path


def load_kernels(target: str = "native") -> CpuKernels:
    """The kernels built for ``target``, loaded; the CPU must be able to run them
    (``can_run``), else they would die on the first unknown instruction."""
    if not can_run(target):
        raise RuntimeError(f"this CPU cannot run famous's kernels built for {target}")
    return CpuKernels(ctypes.CDLL(str(build_kernels(target))))


@functools.cache
def cpu_kernels() -> CpuKernels | None:
    """The native kernels, or None (no compiler, a failed build, or disabled by
    ``FAMOUS_NATIVE_KERNELS=0``); the reason is logged once."""
    if os.environ.get("FAMOUS_NATIVE_KERNELS", "1") == "0":
        return None
    if _compiler() is None:
        log.warning("no C compiler found: famous-native decodes with PyTorch's ops (slower)")
        return None
    try:
        return load_kernels("native")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        log.warning("famous-native decodes with PyTorch's ops: %s", e)
        return None


def int8_activations() -> bool:
    """Whether famous-native's int8 / int4 decode GEMVs quantize their input to int8
    blocks of 32 (``FAMOUS_QUANT_ACTIVATIONS=int8``, the default: integer dot products,
    as llama.cpp's Q8_0 / Q4_0) or keep it fp32 (``=exact``: weight-only arithmetic, the
    dequantized fp32 product within rounding)."""
    value = os.environ.get("FAMOUS_QUANT_ACTIVATIONS", "int8")
    if value not in ("int8", "exact"):
        raise ValueError(f"FAMOUS_QUANT_ACTIVATIONS must be 'int8' or 'exact', not {value!r}")
    return value == "int8"


class QuantMatrix(NamedTuple):
    """A weight-only quantized [n, k] matrix in the layout the quantized GEMV streams
    (``cpu_decode.c``): ``kind`` Q_I8_ROW (int8 [n, k], fp32 scale per row) or Q_I4_BLK
    (uint8 [n, kp / 2], fp16 scale per row and ``block``). The tensors are the quantized
    module's own buffers, read in place. ``int8_act``: the GEMV quantizes its input to
    int8 blocks of 32 and sums integer products (else fp32 activations, exact)."""

    data: torch.Tensor
    scale: torch.Tensor
    kind: int
    block: int
    shape: tuple[int, int]
    int8_act: bool = False


class CpuKernels:
    """Typed wrappers: tensors in, tensors out. Tensors must be contiguous, on the CPU, and
    share one dtype (fp32 or bf16); callers check with ``supports``."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name, (args, res) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        if lib.famous_kernels_abi() != ABI:
            raise RuntimeError(f"stale kernel library (ABI {lib.famous_kernels_abi()} ≠ {ABI})")
        self.lib = lib
        # the ISA the vector code was built for: "avx512-bf16" sums bf16 dot products
        # with its own instruction, every other build in PyTorch's AVX2 order
        self.isa: str = lib.famous_kernels_isa().decode()
        # the integer dot product of the int8-activation GEMVs (vpdpbusd, vpmaddubsw, C)
        self.q8_isa: str = lib.famous_kernels_q8_isa().decode()

    @staticmethod
    def dtype_code(dtype: torch.dtype) -> int | None:
        return _DTYPES.get(dtype)

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor | QuantMatrix,
        bias: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
        norm: tuple[torch.Tensor, float, bool] | None = None,
        activation: tuple[str, bool] | None = None,
    ) -> torch.Tensor:
        """``residual + (prep(x) @ weight.T + bias)`` in one pass over the weight.

        ``prep`` is the identity, or RMSNorm with ``norm = (weight, eps, zero_centered)``,
        or ``activation = (name, gated)``: gated takes rows of ``[gate | up]`` (twice the
        weight's input width) to ``act(gate) * up``; plain applies ``act``. A
        ``QuantMatrix`` weight is streamed quantized and widened to fp32 in registers (or,
        with its ``int8_act``, multiplied in integers by the int8-quantized input).
        """
        n, k = weight.shape
        prep, norm_w, eps, zero_centered, act = PREP_NONE, None, 0.0, False, 0
        if norm is not None:
            prep, (norm_w, eps, zero_centered) = PREP_RMS, norm
        elif activation is not None:
            prep = PREP_GATED if activation[1] else PREP_ACT
            act = ACTIVATIONS[activation[0]]
        m = x.numel() // (2 * k if prep == PREP_GATED else k)
        y = torch.empty(m, n, dtype=x.dtype)
        if isinstance(weight, QuantMatrix):
            fn, w_args = self.lib.famous_linear_q, _quant_args(weight)
        else:
            fn, w_args = self.lib.famous_linear, (weight.data_ptr(),)
        fn(
            x.data_ptr(),
            *w_args,
            None if bias is None else bias.data_ptr(),
            None if residual is None else residual.data_ptr(),
            y.data_ptr(),
            m,
            n,
            k,
            prep,
            None if norm_w is None else norm_w.data_ptr(),
            eps,
            int(zero_centered),
            act,
            _DTYPES[x.dtype],
            torch.get_num_threads(),
        )
        return y.view(*x.shape[:-1], n)

    def rms_norm(
        self, x: torch.Tensor, weight: torch.Tensor, eps: float, zero_centered: bool
    ) -> torch.Tensor:
        dim = x.shape[-1]
        y = torch.empty_like(x)
        self.lib.famous_rms_norm(
            x.data_ptr(),
            weight.data_ptr(),
            y.data_ptr(),
            x.numel() // dim,
            dim,
            eps,
            int(zero_centered),
            _DTYPES[x.dtype],
        )
        return y

    def attention_decode(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        q_norm: torch.Tensor | None,
        k_norm: torch.Tensor | None,
        norm_eps: float,
        norm_zero_centered: bool,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        pos: int,
        start: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        scale: float,
        softcap: float | None,
        attend: bool = True,
    ) -> torch.Tensor:
        """One token: rope (+ q/k norm), write slot ``pos`` of the caches ([1, kv, slots,
        dim], in place), attend to slots [start, pos]; returns [heads * head_dim]. With
        ``attend=False`` it returns the rotated queries instead, for the caller to attend."""

        out = torch.empty(heads * head_dim, dtype=qkv.dtype)
        self.lib.famous_attention_decode(
            qkv.data_ptr(),
            cos.data_ptr(),
            sin.data_ptr(),
            cos.shape[-1],
            None if q_norm is None else q_norm.data_ptr(),
            None if k_norm is None else k_norm.data_ptr(),
            norm_eps,
            int(norm_zero_centered),
            k_cache.data_ptr(),
            v_cache.data_ptr(),
            k_cache.shape[2],
            pos,
            start,
            pos + 1,
            out.data_ptr(),
            heads,
            kv_heads,
            head_dim,
            scale,
            softcap or 0.0,
            int(attend),
            _DTYPES[qkv.dtype],
            torch.get_num_threads(),
        )
        return out


def _quant_args(w: QuantMatrix) -> tuple[int, int, int, int, int]:
    return (w.data.data_ptr(), w.scale.data_ptr(), w.kind, w.block, int(w.int8_act))
