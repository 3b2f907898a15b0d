"""llama.cpp's own programs (``llama-server``, ``llama-quantize``, ``llama-bench``), built once
per machine from llama-cpp-python's sdist, which vendors llama.cpp's sources.

One CMake build makes all three, so a machine never compiles llama.cpp twice for famous.
llama.cpp compiles for the CPU it builds on (``-march=native``), so each build lives under
a key of its llama.cpp version, its backend (cpu, cuda, rocm, vulkan) and the CPU's
instruction sets: a FAMOUS_HOME moved to another CPU builds anew instead of crashing on an
illegal instruction. ``-DLLAMA_USE_PREBUILT_UI=OFF`` keeps configure from downloading a web
UI, so the build needs no network once the sdist is here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from famous.errors import FamousError
from famous.store.paths import famous_home

GPU_FLAGS: dict[str, list[str]] = {
    "cpu": [],
    "cuda": ["-DGGML_CUDA=ON"],
    "rocm": ["-DGGML_HIP=ON"],
    "vulkan": ["-DGGML_VULKAN=ON"],
}
#: the compilers each backend needs beyond a C++ toolchain and CMake
GPU_TOOLCHAINS: dict[str, tuple[str, ...]] = {
    "cpu": (),
    "cuda": ("nvcc",),
    "rocm": ("hipcc",),
    "vulkan": ("glslc",),
}
#: what one build makes: the server famous serves with, and the tools around it
PROGRAMS = ("llama-server", "llama-quantize", "llama-bench")
#: the instruction sets ``-march=native`` builds for, which a binary then requires
ISA_FLAGS = frozenset(
    [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx_vnni",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512dq",
        "avx512cd",
        "avx512vbmi",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
        "asimd",
        "asimddp",
        "asimdhp",
        "sve",
        "sve2",
        "i8mm",
        "bf16",
        "sme",
    ]
)
#: CPU-seconds of a whole build when none was timed on this machine yet: 7 minutes on 2
#: quiet Zen 3 cores for llama-server, llama-quantize and llama-bench
DEFAULT_BUILD_CPU_SECONDS = 840.0
_PERCENT = re.compile(r"^\[\s*(\d{1,3})%\]")


class ComponentError(FamousError, RuntimeError):
    """A component could not be fetched or built; the message says which step and why."""


def components_dir() -> Path:
    return famous_home() / "components"


def llama_server_dir() -> Path:
    return components_dir() / "llama-server"


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock file ``path``, calling ``on_wait`` first when another process has it."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_lock(on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager:
    """One build at a time per FAMOUS_HOME (two ``famous run`` started together build
    once: the second finds the first's build when it gets the lock)."""
    return file_lock(llama_server_dir() / ".build.lock", on_wait)


# -- what this machine's build is called ---------------------------------------------------


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_target() -> str:
    """This CPU as a build key: architecture, its widest vector ISA, and a digest of every
    instruction set a native build may use (``x86_64-avx2-3f9c0a1e``)."""
    machine = platform.machine().lower() or "unknown"
    flags = _cpu_flags() & ISA_FLAGS
    level = next(
        (
            name
            for name, flag in (
                ("avx512", "avx512f"),
                ("avx2", "avx2"),
                ("avx", "avx"),
                ("sve", "sve"),
                ("neon", "asimd"),
            )
            if flag in flags
        ),
        "base",
    )
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:8]
    return f"{machine}-{level}-{digest}"


def build_key(version: str | None, gpu: str) -> str:
    return f"{version or 'latest'}-{gpu}-{cpu_target()}"


# -- what is installed -----------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledBuild:
    """One build of llama.cpp's programs under FAMOUS_HOME."""

    folder: Path
    version: str | None
    gpu: str
    target: str
    seconds: float | None = None  # how long it took to build
    workers: int | None = None  # compile jobs it ran with, at most the cores

    def program(self, name: str = "llama-server") -> Path | None:
        binary = self.folder / "bin" / name
        return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def _read_build(folder: Path) -> InstalledBuild | None:
    try:
        info = json.loads((folder / "component.json").read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        return None
    return InstalledBuild(
        folder=folder,
        version=info.get("version"),
        gpu=str(info.get("gpu") or "cpu"),
        # builds from before build keys existed were made on this machine's own CPU
        target=str(info.get("target") or cpu_target()),
        seconds=info.get("seconds"),
        workers=info.get("workers"),
    )


def installed_builds() -> list[InstalledBuild]:
    """Every build famous made here, newest first (a build of the first layout included)."""
    root = llama_server_dir()
    folders = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    builds = [b for b in (_read_build(f) for f in folders) if b is not None]
    return sorted(builds, key=lambda b: (b.folder / "component.json").stat().st_mtime, reverse=True)


def usable_build(gpu: str = "cpu") -> InstalledBuild | None:
    """The build to run here: this backend and CPU, the installed llama-cpp-python's version
    first (the same llama.cpp as the fallback server), else the newest."""
    target = cpu_target()
    fitting = [b for b in installed_builds() if b.gpu == gpu and b.target == target and b.program()]
    wanted = llama_cpp_python_version()
    same = [b for b in fitting if b.version == wanted]
    return (same or fitting or [None])[0]


def installed_llama_server(gpu: str = "cpu") -> Path | None:
    """The llama-server famous built for this machine, when there is one."""
    build = usable_build(gpu)
    return build.program() if build else None


def installed_program(name: str, gpu: str = "cpu") -> Path | None:
    """Another program of the same build (``llama-quantize``, ``llama-bench``)."""
    build = usable_build(gpu)
    return build.program(name) if build else None


def llama_cpp_python_version() -> str | None:
    """The installed llama-cpp-python, so llama-server is built from the same llama.cpp."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


# -- before building -------------------------------------------------------------------------

BUILD_POLICIES = ("auto", "never")


def build_policy() -> str:
    """``llama-server.build``: auto (famous run / pull build it when a GGUF model needs it)
    or never."""
    from famous.errors import InvalidInput
    from famous.store.config import resolve

    value = str(resolve()["llama-server.build"].value).strip().lower()
    if value not in BUILD_POLICIES:
        raise InvalidInput(
            f"llama-server.build={value!r} is not one of {', '.join(BUILD_POLICIES)}",
            hint="famous set llama-server.build=auto",
        )
    return value


def missing_toolchain(gpu: str = "cpu") -> str | None:
    """What this machine lacks to build the ``gpu`` backend, or None."""
    if gpu not in GPU_FLAGS:
        return f"unknown GPU backend {gpu!r}; one of {sorted(GPU_FLAGS)}"
    missing = [t for t in ("cmake", "c++", *GPU_TOOLCHAINS[gpu]) if shutil.which(t) is None]
    if not missing:
        return None
    hint = (
        "install a C++ toolchain and CMake (Debian/Ubuntu: sudo apt-get install build-essential "
        "cmake)"
        if {"cmake", "c++"} & set(missing)
        else f"install the {gpu} toolkit"
    )
    return f"{', '.join(missing)} not found: {hint}"


def compile_workers(jobs: int | None = None) -> int:
    cores = max(1, os.cpu_count() or 1)
    return max(1, min(jobs or cores, cores))


def estimate_seconds(jobs: int | None = None) -> float:
    """How long a build will take here: the CPU-seconds the last build on this machine took
    (else ``DEFAULT_BUILD_CPU_SECONDS``) over the workers, slowed by what already runs."""
    workers = compile_workers(jobs)
    timed = [b for b in installed_builds() if b.seconds and b.workers]
    cpu_seconds = timed[0].seconds * timed[0].workers if timed else DEFAULT_BUILD_CPU_SECONDS
    cores = max(1, os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    slowdown = max(1.0, (load + workers) / cores)
    return cpu_seconds / workers * slowdown


# -- building --------------------------------------------------------------------------------


def download_sdist(dest: Path, version: str | None = None) -> Path:
    """Fetch llama-cpp-python's source distribution with pip (sources only, no build)."""
    requirement = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--dest",
        str(dest),
        requirement,
    ]
    result = subprocess.run(argv, capture_output=True, text=True)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if result.returncode != 0 or not found:
        raise ComponentError(
            f"could not download the llama-cpp-python sdist ({' '.join(argv)}):\n"
            + (result.stderr or result.stdout)[-2000:]
        )
    return found[-1]


def sdist_version(sdist: Path) -> str | None:
    match = re.match(r"llama_cpp_python-(.+)\.tar\.gz$", sdist.name)
    return match.group(1) if match else None


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack the sdist safely (no absolute paths or links out) and return llama.cpp's root."""
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter="data")
    roots = [p for p in dest.iterdir() if p.is_dir()]
    for root in roots:
        source = root / "vendor" / "llama.cpp"
        if (source / "CMakeLists.txt").is_file():
            return source
    raise ComponentError(f"{sdist} does not contain vendor/llama.cpp/CMakeLists.txt")


def cmake_configure_command(source: Path, build: Path, gpu: str = "cpu") -> list[str]:
    if gpu not in GPU_FLAGS:
        raise ComponentError(f"unknown GPU backend {gpu!r}; one of {sorted(GPU_FLAGS)}")
    return [
        "cmake",
        "-S",
        str(source),
        "-B",
        str(build),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_CURL=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
        *GPU_FLAGS[gpu],
    ]


def cmake_build_command(build: Path, jobs: int) -> list[str]:
    targets = [arg for program in PROGRAMS for arg in ("--target", program)]
    return ["cmake", "--build", str(build), *targets, "--config", "Release", "-j", str(jobs)]


def build_percent(line: str) -> int | None:
    """CMake's progress at the start of a build line (``[ 42%] Building CXX object …``)."""
    match = _PERCENT.match(line)
    return min(100, int(match.group(1))) if match else None


def run_logged(
    argv: list[str],
    log: IO[str],
    on_line: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> int:
    """Run ``argv``, its output line by line into ``log`` and ``on_line``; its exit status."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            on_line(line)
        return proc.wait()


@dataclass
class BuildResult:
    binary: Path
    version: str | None
    gpu: str
    log_path: Path
    seconds: float
    folder: Path


def build_llama_server(
    sdist: Path | None = None,
    gpu: str = "cpu",
    jobs: int | None = None,
    version: str | None = None,
    on_step: Callable[[str], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Download (unless given) the sdist, build llama.cpp's programs and install them under
    FAMOUS_HOME, keyed by version, backend and CPU.

    ``on_step`` hears each step, ``on_progress`` the compile's percentage. The compiler's
    output goes to ``build.log`` next to the programs; an error quotes its end.
    """
    missing = missing_toolchain(gpu)
    if missing:
        raise ComponentError(f"cannot build llama-server: {missing}")
    step = on_step or (lambda _msg: None)
    progress = on_progress or (lambda _pct: None)
    started = time.monotonic()
    version = version or (sdist_version(sdist) if sdist else None) or llama_cpp_python_version()
    workers = compile_workers(jobs)
    with tempfile.TemporaryDirectory(prefix="famous-llama-server-") as tmp:
        work = Path(tmp)
        if sdist is None:
            step(f"downloading llama-cpp-python {version or '(latest)'} sources")
            sdist = download_sdist(work / "sdist", version)
            version = version or sdist_version(sdist)
        step(f"unpacking {sdist.name}")
        source = extract_sdist(sdist, work / "src")
        build = work / "build"
        staging = llama_server_dir() / f".{build_key(version, gpu)}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        log_path = staging / "build.log"

        def on_line(line: str) -> None:
            percent = build_percent(line)
            if percent is not None:
                progress(percent)

        with open(log_path, "w") as log:
            for label, argv in (
                ("configuring (CMake)", cmake_configure_command(source, build, gpu)),
                (f"compiling with {workers} jobs", cmake_build_command(build, workers)),
            ):
                step(label)
                code = run_logged(argv, log, on_line)
                if code != 0:
                    log.flush()
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise ComponentError(f"{label} failed (exit {code}); see {log_path}:\n{tail}")
        for program in PROGRAMS:
            built = build / "bin" / program
            if not built.is_file():
                raise ComponentError(f"the build finished but {built} is missing; see {log_path}")
            shutil.copy2(built, staging / "bin" / program)
        seconds = time.monotonic() - started
        info = {
            "version": version,
            "gpu": gpu,
            "target": cpu_target(),
            "sdist": sdist.name,
            "programs": list(PROGRAMS),
            "seconds": round(seconds, 1),
            "workers": workers,
        }
        (staging / "component.json").write_text(json.dumps(info, indent=2))
        folder = llama_server_dir() / build_key(version, gpu)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)  # never a half-installed build in place
    return BuildResult(
        binary=folder / "bin" / "llama-server",
        version=version,
        gpu=gpu,
        log_path=folder / "build.log",
        seconds=seconds,
        folder=folder,
    )
