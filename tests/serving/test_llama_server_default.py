"""llama-server by default: the build famous makes once per machine (keyed by version,
backend and CPU), how long it says it will take, which server a GGUF model gets and why,
and ``famous run`` building it, or saying why it cannot, before it serves.

The real build is the suite's own provision (``provision.llama_server_home``: ``famous
install-component llama-server`` run as a user runs it, its output kept); these tests read
what it printed and made, and hand the build to fresh FAMOUS_HOMEs instead of compiling
llama.cpp again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_harness import famous_cli, famous_env

from famous.runtimes import components
from famous.runtimes.base import LaunchSpec
from famous.runtimes.llamacpp import (
    MAX_AUTO_SLOTS,
    LlamaCppPythonServer,
    LlamaServer,
    auto_slots,
    llamacpp_adapter,
)
from famous.services.llama_server import backend_to_build
from provision import INSTALL_OUTPUT, llama_server_home

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FAMOUS_HOME on a PATH without llama-server, nothing configured."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FAMOUS_HOME", str(home))
    for name in ("FAMOUS_LLAMA_SERVER", "FAMOUS_LLAMACPP_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return home


@pytest.fixture(scope="module")
def built() -> components.InstalledBuild:
    """The provisioned build, as famous reads it from its FAMOUS_HOME."""
    root = llama_server_home()
    os.environ["FAMOUS_HOME"], previous = str(root), os.environ.get("FAMOUS_HOME")
    try:
        build = components.usable_build()
    finally:
        if previous is None:
            os.environ.pop("FAMOUS_HOME")
        else:
            os.environ["FAMOUS_HOME"] = previous
    assert build is not None
    return build


def _seed(home: Path, build: components.InstalledBuild) -> Path:
    """Hand the provisioned build to ``home`` as if famous had built it there."""
    folder = home / "components" / "llama-server" / build.folder.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(build.folder, target_is_directory=True)
    return folder


# -- the build -----------------------------------------------------------------------------


def test_one_build_makes_server_quantizer_and_bench(built: components.InstalledBuild) -> None:
    info = json.loads((built.folder / "component.json").read_text())
    assert info["target"] == components.cpu_target() == built.target
    assert info["gpu"] == "cpu" and info["version"] == components.llama_cpp_python_version()
    assert built.folder.name == components.build_key(info["version"], "cpu")
    for program in components.PROGRAMS:
        assert built.program(program) is not None, program
    assert info["seconds"] > 0 and 1 <= info["workers"] <= (os.cpu_count() or 1)
    # each program was linked by this build (the log is CMake's own output)
    log = (built.folder / "build.log").read_text()
    for program in components.PROGRAMS:
        assert f"Built target {program}" in log, program


def test_install_component_said_its_time_first_then_progress(
    built: components.InstalledBuild,
) -> None:
    """What ``famous install-component llama-server`` printed, piped (not a terminal): the
    estimate before anything else, the steps, a line per tenth of the compile, the result."""
    printed = (llama_server_home() / INSTALL_OUTPUT).read_text().splitlines()
    assert re.match(
        r"building llama\.cpp \(llama-server, llama-quantize, llama-bench\) "
        r"for this machine \(cpu, [\w-]+\), about \d+ min; once per machine",
        printed[0],
    ), printed[0]
    steps = [line for line in printed if line.startswith("… ")]
    assert any("configuring (CMake)" in s for s in steps), steps
    percents = [int(m.group(1)) for s in steps if (m := re.match(r"… (\d+)% compiled", s))]
    assert percents == sorted(percents) and percents[-1] == 100, percents
    assert len(percents) >= 5, percents  # not one line at the end: the compile was visible
    assert any(line.startswith("built llama-server (cpu") for line in printed), printed[-3:]


def test_build_percent_reads_cmake_progress(built: components.InstalledBuild) -> None:
    """Every line CMake printed in the real build: the progress is read where CMake puts
    it and nowhere else."""
    lines = (built.folder / "build.log").read_text().splitlines()
    found = [p for p in map(components.build_percent, lines) if p is not None]
    assert found and max(found) == 100 and min(found) < 10
    assert components.build_percent("-- Found OpenSSL: [ 5%]") is None
    assert components.build_percent("[100%] Linking CXX executable ../../bin/llama-server") == 100


def test_estimate_uses_the_last_build_here(
    home: Path, built: components.InstalledBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    cores = os.cpu_count() or 1
    assert components.estimate_seconds() == pytest.approx(
        components.DEFAULT_BUILD_CPU_SECONDS / cores
    )
    _seed(home, built)
    expected = built.seconds * built.workers / cores
    assert components.estimate_seconds() == pytest.approx(expected)
    # a machine already busy with as much work as it has cores takes twice as long
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 0.0, 0.0))
    assert components.estimate_seconds() == pytest.approx(2 * expected)


def test_builds_are_kept_per_cpu_and_backend(
    home: Path, built: components.InstalledBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAMOUS_HOME moved to another CPU (or asked for another backend) does not run a
    binary compiled for the first: its build is not usable there."""
    _seed(home, built)
    assert components.installed_llama_server() == _seed_binary(home, built)
    assert components.installed_llama_server("cuda") is None
    monkeypatch.setattr(components, "cpu_target", lambda: "x86_64-avx512-00000000")
    assert components.installed_llama_server() is None


def _seed_binary(home: Path, build: components.InstalledBuild) -> Path:
    return home / "components" / "llama-server" / build.folder.name / "bin" / "llama-server"


def test_first_layout_builds_still_serve(home: Path, built: components.InstalledBuild) -> None:
    """A build made before builds had keys (components/llama-server/bin) is this machine's."""
    legacy = home / "components" / "llama-server"
    (legacy / "bin").mkdir(parents=True)
    shutil.copy2(built.program(), legacy / "bin" / "llama-server")
    (legacy / "component.json").write_text(json.dumps({"version": "0.3.0", "gpu": "cpu"}))
    assert components.installed_llama_server() == legacy / "bin" / "llama-server"


def test_missing_toolchain_names_what_to_install(home: Path) -> None:
    missing = components.missing_toolchain("cpu")
    assert missing is not None and "cmake" in missing and "build-essential" in missing
    assert "unknown GPU backend" in (components.missing_toolchain("metal-x") or "")
    with pytest.raises(components.ComponentError, match="cmake"):
        components.build_llama_server(gpu="cpu")


# -- which server, and why ----------------------------------------------------------------


def test_llama_server_is_the_default_where_it_is_built(
    home: Path, built: components.InstalledBuild
) -> None:
    fallback = llamacpp_adapter({})
    assert isinstance(fallback, LlamaCppPythonServer)
    assert "not built for this machine" in fallback.reason
    assert "famous install-component llama-server" in fallback.reason
    _seed(home, built)
    chosen = llamacpp_adapter({})
    assert isinstance(chosen, LlamaServer) and chosen.binary == _seed_binary(home, built)
    assert chosen.reason.startswith("famous's build for this machine")
    kept = llamacpp_adapter({"server": "llama-cpp-python"})
    assert isinstance(kept, LlamaCppPythonServer)
    assert kept.reason == "server=llama-cpp-python is configured"


def test_backend_to_build(
    home: Path, built: components.InstalledBuild, tiny_models: dict[str, Path]
) -> None:
    gguf = str(tiny_models["llama"])
    assert backend_to_build("tiny", gguf) == "cpu"
    assert backend_to_build("weights", str(home)) is None  # not a GGUF
    assert backend_to_build("not-installed") is None
    cli = famous_cli(home, "set", "server=llama-cpp-python", env=_cli_env(home))
    assert cli.returncode == 0, cli.stderr
    assert backend_to_build("tiny", gguf) is None  # the user keeps llama_cpp.server
    (home / "config.yaml").unlink()
    _seed(home, built)
    assert backend_to_build("tiny", gguf) is None  # built already


def _cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = famous_env(home)
    for name in ("FAMOUS_LLAMA_SERVER", "FAMOUS_LLAMACPP_SERVER"):
        env.pop(name)
    return {**env, "PATH": os.environ["PATH"], **extra}


# -- famous run, as a user runs it ----------------------------------------------------------


@pytest.fixture
def stop_after(home: Path) -> Iterator[None]:
    yield
    famous_cli(home, "stop", "--gateway", env=_cli_env(home))


def test_run_without_a_toolchain_says_why_and_serves(
    home: Path, tiny_models: dict[str, Path], stop_after: None
) -> None:
    """No C++ toolchain: famous run says llama-server cannot be built, serves on
    llama_cpp.server all the same, and famous ps says why."""
    env = _cli_env(home, FAMOUS_LLAMA_SERVER_BUILD="auto")
    run = famous_cli(
        home, "run", str(tiny_models["llama"]), "hello", "--max-tokens", "4", env=env, timeout=240
    )
    assert run.returncode == 0, run.stderr
    assert "llama-server cannot be built (cmake, c++ not found" in run.stderr, run.stderr
    assert "(llama_cpp.server)" in run.stderr
    ps = famous_cli(home, "ps", env=env)
    assert "runs on llama_cpp.server: llama-server is not built for this machine" in ps.stdout
    rows = json.loads(famous_cli(home, "ps", "--format", "json", env=env).stdout)
    assert rows[0]["server"] == "llama_cpp.server"
    assert "famous install-component llama-server" in rows[0]["server_reason"]


def test_run_uses_the_build_it_finds(
    home: Path, built: components.InstalledBuild, tiny_models: dict[str, Path], stop_after: None
) -> None:
    _seed(home, built)
    env = _cli_env(home, FAMOUS_LLAMA_SERVER_BUILD="auto")
    run = famous_cli(
        home, "run", str(tiny_models["llama"]), "hello", "--max-tokens", "4", env=env, timeout=240
    )
    assert run.returncode == 0, run.stderr
    assert "building llama.cpp" not in run.stderr and "(llama-server)" in run.stderr
    rows = json.loads(famous_cli(home, "ps", "--format", "json", env=env).stdout)
    assert rows[0]["server"] == "llama-server"
    assert rows[0]["server_reason"].startswith("famous's build for this machine")


# -- llama-server's slots --------------------------------------------------------------------


def test_slots_are_sized_from_memory() -> None:
    per_token = 2 * 30 * 3 * 64 * 2  # SmolLM2-135M: 30 layers, 3 kv heads of 64
    gib = 1 << 30
    assert auto_slots(per_token, 4096, memory=24 * gib) == MAX_AUTO_SLOTS
    assert auto_slots(per_token, 4096, memory=2 * gib) == 2
    assert auto_slots(per_token * 100, 4096, memory=2 * gib) == 1  # never none
    assert auto_slots(None, 4096, memory=gib) is None


def test_every_slot_gets_the_whole_context(tiny_models: dict[str, Path]) -> None:
    binary = Path(sys.executable)  # any executable: only the command line is read
    spec = LaunchSpec(name="t", model_path=tiny_models["llama"])
    argv = LlamaServer({"ctx-size": 512, "parallel": 3}, binary).command(spec, 1)
    assert argv[argv.index("--parallel") + 1] == "3"
    assert argv[argv.index("--ctx-size") + 1] == str(3 * 512)
    auto = LlamaServer({"ctx-size": 512, "cache-reuse": 256}, binary).command(spec, 1)
    slots = int(auto[auto.index("--parallel") + 1])
    assert 1 <= slots <= MAX_AUTO_SLOTS
    assert auto[auto.index("--ctx-size") + 1] == str(slots * 512)
    assert auto[auto.index("--cache-reuse") + 1] == "256"
    embedding = LaunchSpec(name="e", model_path=tiny_models["bert"])
    assert "--parallel" not in LlamaServer({}, binary).command(embedding, 1)


def test_draft_model_must_be_a_gguf_famous_has(home: Path, tiny_models: dict[str, Path]) -> None:
    binary = Path(sys.executable)
    spec = LaunchSpec(name="t", model_path=tiny_models["llama"])
    draft = str(tiny_models["llama"])
    argv = LlamaServer({"draft-model": draft, "draft-max": 8}, binary).command(spec, 1)
    assert argv[argv.index("--model-draft") + 1] == draft
    assert argv[argv.index("--draft-max") + 1] == "8"
    with pytest.raises(Exception, match="famous pull nothing-here"):
        LlamaServer({"draft-model": "nothing-here"}, binary).command(spec, 1)
    with pytest.raises(ValueError, match="only be set in famous's own configuration"):
        LlamaServer.request_configuration({"draft-model": draft})
