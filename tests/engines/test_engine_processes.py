"""Each runtime's process life: launch, a health wait that names what it waited for, logs
captured, a clean stop, and a model that cannot load reported with its log.

MLX, transformers and OpenVINO run for real. vLLM and Ampere's llama.cpp cannot run on
this machine (no GPU, x86-64), so their adapters launch a stand-in process in their place:
what is tested there is famous's side (health route, timeout message, logs, stop).
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from engine_helpers import has_module

from famous.runtimes import HealthTimeout, LaunchSpec, get_runtime
from famous.runtimes.base import EngineProcess, EngineStartError, RuntimeAdapter

pytestmark = pytest.mark.slow


def get(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read())


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def launch(adapter: RuntimeAdapter, name: str, model: Path, log: Path) -> EngineProcess:
    return adapter.launch(LaunchSpec(name=name, model_path=model, log_path=log))


def check_lifecycle(proc: EngineProcess, server: str, log_marker: str) -> None:
    """Impatient wait → timeout naming the route and server; patient wait → healthy; stop."""
    try:
        with pytest.raises(HealthTimeout) as timeout:
            proc.wait_healthy(timeout=0.2)
        message = str(timeout.value)
        assert f"GET {proc.health_url}" in message
        assert server in message and f"pid {proc.pid}" in message
        proc.wait_healthy(timeout=180)
        assert proc.healthy()
        models = get(proc.base_url + "/v1/models")
        assert models["object"] == "list"
        assert [m["id"] for m in models["data"]] == [proc.name], models  # famous's name only
        log = proc.log_path.read_text(errors="replace")
        assert "famous starts:" in log and log_marker in log, log[-2000:]
    finally:
        code = proc.stop(grace=15)
    assert not proc.alive()
    assert code is not None
    assert port_closed(proc.port)


def test_transformers_worker_lifecycle(hf_model: Path, tmp_path: Path) -> None:
    adapter = get_runtime("transformers", {"threads": 1, "dtype": "float32"})
    proc = launch(adapter, "tiny", hf_model, tmp_path / "tf.log")
    assert proc.server == "famous.runtimes.workers.transformers"
    check_lifecycle(proc, proc.server, "famous transformers worker: tiny on cpu")


def test_mlx_server_lifecycle(mlx_model: Path, tmp_path: Path) -> None:
    proc = launch(get_runtime("mlx"), "tiny", mlx_model, tmp_path / "mlx.log")
    check_lifecycle(proc, "mlx_lm.server", "Starting httpd")


def test_openvino_worker_lifecycle(ov_model: Path, tmp_path: Path) -> None:
    proc = launch(get_runtime("openvino", {"device": "cpu"}), "tiny", ov_model, tmp_path / "o.log")
    assert "--device" in proc.command and "CPU" in proc.command
    check_lifecycle(proc, proc.server, "famous openvino worker: tiny on CPU")


@pytest.mark.parametrize(
    ("runtime", "needs", "marker"),
    [
        ("transformers", "torch", "error: cannot load"),
        ("openvino", "openvino_genai", "error: cannot load"),
        ("mlx", "mlx_lm", "error: mlx_lm's generation thread died"),
    ],
)
def test_model_that_cannot_load_is_reported(
    runtime: str, needs: str, marker: str, tmp_path: Path
) -> None:
    if not has_module(needs):
        pytest.skip(f"{needs} is not installed")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    proc = launch(get_runtime(runtime), "broken", empty, tmp_path / "broken.log")
    try:
        with pytest.raises(EngineStartError) as failure:
            proc.wait_healthy(timeout=120)
    finally:
        proc.stop(grace=5)
    assert not isinstance(failure.value, HealthTimeout)
    assert "exited with status" in str(failure.value)
    assert any(marker in line for line in failure.value.log_lines), failure.value.log_lines


class _StandIn:
    """Replace an adapter's argv by a process that logs a line and never opens its port."""

    @staticmethod
    def argv() -> list[str]:
        code = "import sys, time; print('stand-in engine up', flush=True); time.sleep(120)"
        return [sys.executable, "-c", code]


@pytest.mark.parametrize(("runtime", "server"), [("vllm", "vllm serve"), ("llamacpp-ampere", "")])
def test_health_timeout_logs_and_stop_without_the_engine(
    runtime: str, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = get_runtime(runtime)
    real_argv = adapter.command(LaunchSpec(name="m", model_path=tmp_path), 12345)
    assert real_argv  # the real command line builds here even where it cannot run
    monkeypatch.setattr(adapter, "check_installed", lambda: None)
    monkeypatch.setattr(adapter, "command", lambda spec, port: _StandIn.argv())
    proc = launch(adapter, "m", tmp_path, tmp_path / "engine.log")
    try:
        with pytest.raises(HealthTimeout) as timeout:
            proc.wait_healthy(timeout=1.0)
        assert f"GET {proc.health_url}" in str(timeout.value)
        assert (server or adapter.server) in str(timeout.value)
        assert any("stand-in engine up" in line for line in timeout.value.log_lines)
    finally:
        proc.stop(grace=5)
    assert not proc.alive()
