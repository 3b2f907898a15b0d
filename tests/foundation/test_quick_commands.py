"""The read-only commands answered without typer print exactly what the Typer app prints.

Both paths run as real processes: the console script's entry point (which tries
``famous.cli.quick`` first) against the Typer app called directly. Output, errors
and exit codes must agree for every command, format and error case, and whatever the quick
path does not recognise must reach the Typer app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from famous.cli.quick import SPECS, parse

from .conftest import machine_root

CAPTURE = "i5-3570k+arc-a580+gtx1080ti"
MODEL = "qwen2.5-0.5b-instruct"
# Both as the console script runs them (the program is named "famous" in usage lines).
CONSOLE = "import sys; sys.argv[0] = 'famous'; from famous.cli.main import run; run()"
TYPER_APP = "import sys; sys.argv[0] = 'famous'; from famous.cli.app import app; app()"
PROBE = """
import json, sys
from famous.cli.main import run
try:
    run()
finally:
    sys.stderr.write("\\nLOADED=" + json.dumps(sorted(
        {m.split(".")[0] for m in sys.modules} & {"typer", "click", "rich", "pydantic", "yaml"}
        | {m for m in sys.modules if m.startswith("famous.runtimes.")} - {"famous.runtimes.keys"}))
        + "\\n")
"""


def _run(program: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _famous(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(CONSOLE, args, env)


def _typer(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(TYPER_APP, args, env)


@pytest.fixture
def env(famous_home: Path) -> dict[str, str]:
    return {**os.environ, "FAMOUS_HOME": str(famous_home)}


def _cases() -> list[list[str]]:
    root = str(machine_root(CAPTURE))
    return [
        ["show-machine", "--root", root],
        ["show-machine", "--all", f"--root={root}", "--format", "json"],
        ["engines", MODEL, "--root", root],
        ["engines", MODEL, "-f", "yaml", "--root", root],
        ["show-engine", MODEL, "--root", root],
        ["show-engine", MODEL, "cpu-avx2", "--root", root, "--format=json"],
        ["show-engine", MODEL, "no-such-engine", "--root", root],  # an error: exit code, stderr
        ["engines", "no-such-model", "--root", root],
        ["show-machine", "--root", "/nonexistent/capture"],
        ["models"],
        ["models", "--format", "json"],
        ["status"],
        ["status", "-f", "json"],
        ["ps"],
        ["ps", "--format", "yaml"],
        ["list"],
        ["list", MODEL, "--format", "json"],
    ]


def test_quick_answers_equal_the_typer_app(env: dict[str, str]) -> None:
    for args in _cases():
        assert parse(args) is not None, args
        quick, typer_app = _famous(args, env), _typer(args, env)
        assert (quick.returncode, quick.stdout, quick.stderr) == (
            typer_app.returncode,
            typer_app.stdout,
            typer_app.stderr,
        ), args
    machine = json.loads(_famous(_cases()[1], env).stdout)
    assert machine["architecture"] == "amd64" and machine["devices"]


@pytest.mark.parametrize(
    "args",
    [
        ["show-machine", "--help"],
        ["engines"],  # the model is missing: Typer's usage error
        ["engines", MODEL, "--format", "xml"],
        ["ps", "--bogus"],
        ["list", "a", "b"],
        ["show-machine", "--root"],
        ["models", "--", "x"],
        ["pull", MODEL],
        ["--version"],
        [],
    ],
    ids=lambda a: " ".join(a) or "(nothing)",
)
def test_what_quick_does_not_know_goes_to_typer(args: list[str], env: dict[str, str]) -> None:
    assert parse(args) is None
    if args and args[0] == "pull":
        return  # a state-changing command: recognised as not quick, not run here
    done = _famous(args, env)
    assert (done.returncode, done.stdout, done.stderr) == (
        (t := _typer(args, env)).returncode,
        t.stdout,
        t.stderr,
    )
    assert done.returncode != 0 or done.stdout  # help or version text, or a usage error


def test_quick_path_loads_no_typer_adapter_and_once_packages_validated_no_pydantic_or_yaml(
    env: dict[str, str],
) -> None:
    """The first run may validate a package (pydantic, YAML) and write its snapshot; from
    then on no read-only command loads typer, pydantic, YAML or a runtime adapter (show-engine
    reads the runtime's keys from plain data)."""
    root = str(machine_root(CAPTURE))
    light = {"show-machine": ["--root", root], "status": [], "ps": [], "list": [], "models": []}
    for command in SPECS:
        extra = light.get(command, [MODEL, "--root", root])
        for _ in range(2):  # the first run may validate packages and write their snapshots
            done = _run(PROBE, [command, *extra], env)
        line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED="))
        loaded = set(json.loads(line.removeprefix("LOADED=")))
        assert done.returncode == 0, done.stderr
        assert not loaded, (command, loaded)


def test_runtime_keys_are_each_adapters_keys() -> None:
    """The plain table show-engine reads is the one each adapter validates with: every
    runtime famous can launch has its entry, and nothing else does."""
    from famous.runtimes import RUNTIMES, get_runtime
    from famous.runtimes.keys import RUNTIME_KEYS

    assert set(RUNTIME_KEYS) == set(RUNTIMES)
    for runtime, keys in RUNTIME_KEYS.items():
        assert get_runtime(runtime).configuration_keys is keys, runtime
