"""Engine components installed on demand, the way a snap installs an engine's components.

``llama-server`` is built from llama-cpp-python's sdist (it vendors llama.cpp's sources) with
CMake. ``-DLLAMA_USE_PREBUILT_UI=OFF`` keeps configure from downloading a web UI, so the
build needs no network once the sdist is here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from famous.errors import FamousError
from famous.store.paths import famous_home

GPU_FLAGS: dict[str, list[str]] = {
    "cpu": [],
    "cuda": ["-DGGML_CUDA=ON"],
    "rocm": ["-DGGML_HIP=ON"],
    "vulkan": ["-DGGML_VULKAN=ON"],
}


class ComponentError(FamousError, RuntimeError):
    """A component could not be fetched or built; the message says which step and why."""


def components_dir() -> Path:
    return famous_home() / "components"


def llama_server_dir() -> Path:
    return components_dir() / "llama-server"


def installed_llama_server() -> Path | None:
    """The llama-server famous built, when there is one."""
    binary = llama_server_dir() / "bin" / "llama-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def installed_info() -> dict[str, object] | None:
    try:
        return json.loads((llama_server_dir() / "component.json").read_text())
    except (OSError, ValueError):
        return None


def llama_cpp_python_version() -> str | None:
    """The installed llama-cpp-python, so llama-server is built from the same llama.cpp."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


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
    return [
        "cmake",
        "--build",
        str(build),
        "--target",
        "llama-server",
        "--config",
        "Release",
        "-j",
        str(jobs),
    ]


@dataclass
class BuildResult:
    binary: Path
    version: str | None
    gpu: str
    log_path: Path


def build_llama_server(
    sdist: Path | None = None,
    gpu: str = "cpu",
    jobs: int | None = None,
    version: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> BuildResult:
    """Download (unless given) the sdist, build ``llama-server`` and install it under FAMOUS_HOME.

    Takes about 6 minutes on 2 cores. The compiler's output goes to a log file next to the
    component; the error message quotes its end when a step fails.
    """
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise ComponentError(
                f"{tool} is not installed; install a C++ toolchain and CMake "
                "(Debian/Ubuntu: sudo apt-get install build-essential cmake)"
            )
    step = on_step or (lambda _msg: None)
    target = llama_server_dir()
    target.mkdir(parents=True, exist_ok=True)
    log_path = target / "build.log"
    version = version or llama_cpp_python_version()
    jobs = jobs or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="famous-llama-server-") as tmp:
        work = Path(tmp)
        if sdist is None:
            step(f"downloading llama-cpp-python {version or '(latest)'} sources")
            sdist = download_sdist(work / "sdist", version)
        step(f"unpacking {sdist.name}")
        source = extract_sdist(sdist, work / "src")
        build = work / "build"
        with open(log_path, "w") as log:
            for label, argv in (
                ("configuring (CMake)", cmake_configure_command(source, build, gpu)),
                (f"compiling llama-server with {jobs} jobs", cmake_build_command(build, jobs)),
            ):
                step(label)
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
                if code != 0:
                    log.flush()
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise ComponentError(f"{label} failed (exit {code}); see {log_path}:\n{tail}")
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise ComponentError(f"the build finished but {built} is missing; see {log_path}")
        (target / "bin").mkdir(exist_ok=True)
        installed = target / "bin" / "llama-server"
        tmp_copy = installed.with_suffix(".partial")
        shutil.copy2(built, tmp_copy)
        os.replace(tmp_copy, installed)  # never leave a half-copied binary in place
    info = {"version": version, "gpu": gpu, "sdist": sdist.name, "binary": str(installed)}
    (target / "component.json").write_text(json.dumps(info, indent=2))
    return BuildResult(binary=installed, version=version, gpu=gpu, log_path=log_path)
