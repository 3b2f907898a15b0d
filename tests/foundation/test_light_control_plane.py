"""Commands that only read state never import torch, an engine or the gateway."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import machine_root

HEAVY = {
    "torch",
    "transformers",
    "llama_cpp",
    "vllm",
    "mlx",
    "mlx_lm",
    "openvino",
    "openvino_genai",
    "executorch",
    "litert_torch",
    "ai_edge_litert",
    "tensorflow",
    "fastapi",
    "uvicorn",
    "safetensors",
    "numpy",
    "httpx",
    "huggingface_hub",
    "famous.genai",
}

PROBE = """
import json, sys
from famous.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or
                ".".join(m.split(".")[:2]) in HEAVY)
sys.stderr.write("\\nHEAVY=" + json.dumps(loaded) + "\\n")
"""

READ_ONLY_COMMANDS = [
    ["show-machine"],
    ["models"],
    ["engines", "qwen2.5-0.5b-instruct"],
    ["show-engine", "qwen2.5-0.5b-instruct"],
    ["show-model", "qwen2.5-0.5b-instruct"],
    ["get"],
    ["list"],
    ["ps"],
    ["status"],
    ["ui", "--help"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c[0])
def test_read_only_commands_stay_light(command: list[str], famous_home) -> None:
    from famous.cli.main import app

    if command[0] not in {c.name for c in app.registered_commands}:
        pytest.skip(f"`famous {command[0]}` is not part of this build")
    root = str(machine_root("i5-3570k+arc-a580+gtx1080ti"))
    env_args = ["--root", root] if command[0] in {"show-machine", "engines", "show-engine"} else []
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {sorted(HEAVY)!r}\n" + PROBE, *command, *env_args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == [], done.stderr
