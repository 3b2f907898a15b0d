"""The main job end to end: ``famous run ORG/NAME "prompt"`` pulls the GGUF from the Hub
(a Hub-protocol server on 127.0.0.1), starts the gateway and the llama.cpp engine, answers,
and ``famous stop --gateway`` takes everything down again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving_harness import famous_env, hub_server_module


def _wait_gone(pid: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@pytest.mark.slow
def test_run_pulls_from_the_hub_serves_and_answers(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    hub = hub_server_module()
    home = tmp_path / "home"
    server = hub.HubServer().start()
    server.add_repo(
        "org/Tiny-Chat-GGUF",
        {
            "tiny-chat-q8_0.gguf": tiny_models["llama"],
            "README.md": b"# tiny chat model\n",
        },
    )
    env = {**famous_env(home), **hub.environment(server)}
    env.pop("HF_TOKEN", None)

    def famous(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "famous", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    gateway_pid = None
    try:
        done = famous("run", "org/Tiny-Chat-GGUF", "hello there", "--max-tokens", "8")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), done.stderr
        gateway_pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        # only the chosen engine's file came from the Hub, verified into the catalog
        assert [p for _, p, _ in server.requests if "/resolve/" in p and "README" in p] == []
        listed = json.loads(famous("list", "--format", "json").stdout)
        assert [(a["model"], a["variant"]) for a in listed] == [("org/Tiny-Chat-GGUF", "q8_0")]
        status = famous("status")
        assert status.returncode == 0 and "ready" in status.stdout, status.stdout
        # a second run reuses the pulled artifact and the running gateway: no new download
        before = len(server.requests)
        again = famous("run", "org/Tiny-Chat-GGUF", "hello again", "--max-tokens", "4")
        assert again.returncode == 0, again.stderr
        assert not [p for _, p, _ in server.requests[before:] if "/resolve/" in p]
        down = famous("stop", "--gateway")
        assert down.returncode == 0, down.stderr
        _wait_gone(gateway_pid)
        gateway_pid = None
    finally:
        server.stop()
        if gateway_pid:
            os.kill(gateway_pid, signal.SIGTERM)
            _wait_gone(gateway_pid)
