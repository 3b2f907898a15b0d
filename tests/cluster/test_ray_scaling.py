"""Autoscaling on a real Ray cluster (one node on 127.0.0.1): ``famous serve --ray ADDRESS
--min-replicas 0`` serves the real SmolLM2 GGUF on llama-server through Ray Serve; the first
request (the official ``openai`` client) loads it, Ray scales it to zero once the keep-alive
passed (its engine goes), and the next request waits while Ray starts a replica again, then
gets its answer. ``famous logs`` shows the replica's engine log, read on its node, and
``famous ps`` the replica's node and engine. The replica options are checked before the
gateway starts, and mapped to what Ray Serve's own autoscaling configuration accepts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil
import pytest

REALWEIGHTS = Path(__file__).resolve().parents[1] / "realweights"
if str(REALWEIGHTS) not in sys.path:
    sys.path.insert(0, str(REALWEIGHTS))

import ray_harness as ray_cluster  # noqa: E402
from ray.serve.config import AutoscalingConfig  # noqa: E402
from ray_harness import RayNode, harness  # noqa: E402
from realweights_helpers import CHAT  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from famous.cli.app import app  # noqa: E402
from famous.errors import InvalidInput  # noqa: E402
from famous.serve.ray_serve.scaling import (  # noqa: E402
    deployment_scaling,
    max_ongoing,
    scaling_options,
)
from provision import smollm2_gguf  # noqa: E402

MODEL = "smol"
KEEP_ALIVE = 4.0


@dataclass
class Scaled:
    node: RayNode
    gateway: harness.Gateway
    env: dict[str, str]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    root = tmp_path_factory.mktemp("ray-scaling")
    env = ray_cluster.with_ray_token(harness.famous_env(root, "llama-server"), root)
    nodes: list[RayNode] = []
    gateway = None
    try:
        # two CPU slots: a new replica may start while the one scaled down drains
        head, address = ray_cluster.launch_node("node-a", root, env, {"node_a": 1}, num_cpus=2)
        nodes.append(head)
        ray_cluster.wait_started(head)
        home = root / "gateway"
        home.mkdir()
        gateway_env = {**env, "FAMOUS_HOME": str(home)}
        args = ["--min-replicas", "0", "--max-replicas", "1", "--keep-alive", str(KEEP_ALIVE)]
        args += ["--model", f"{MODEL}={smollm2_gguf()}"]
        gateway = ray_cluster.start_ray_gateway(gateway_env, address, args)
        yield Scaled(head, gateway, gateway_env)
    finally:
        if gateway is not None:
            harness.stop_gateway(gateway)
        for node in nodes:
            node.stop()
        assert ray_cluster.leftover(nodes) == []


def _cli(state: Scaled, *args: str) -> str:
    out = harness.famous_cli(state.gateway.home, *args, env=state.env, timeout=90)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _replicas(state: Scaled) -> list[dict]:
    """The model's live replicas, as the gateway reports them (what ``famous ps`` shows)."""
    rows = [d for d in state.gateway.ps() if d["name"] == MODEL]
    assert len(rows) == 1, rows
    return rows[0]["replicas"] or []


def _ask(state: Scaled) -> str:
    client = openai.OpenAI(base_url=state.gateway.v1, api_key="unused", max_retries=0, timeout=300)
    answer = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24)
    return answer.choices[0].message.content or ""


def _wait_replicas(state: Scaled, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    replicas = _replicas(state)
    while len(replicas) != count and time.monotonic() < deadline:
        time.sleep(1.0)
        replicas = _replicas(state)
    return replicas


def test_scale_from_zero_logs_and_ps(scaled: Scaled) -> None:
    assert "Paris" in _ask(scaled)  # the first request deploys the model and waits for it
    [replica] = _wait_replicas(scaled, 1, 30)
    assert replica["server"] == "llama-server" and replica["variant"] == "file", replica

    listed = json.loads(_cli(scaled, "ps", "--format", "json"))
    assert [r["replicas"] for r in listed if r["name"] == MODEL] == [[replica]]
    table = _cli(scaled, "ps")  # the replica by node, with its engine and server
    line = next(ln for ln in table.splitlines() if replica["node_id"][:12] in ln)
    assert replica["engine"] in line and "llama-server" in line, table
    assert replica["node_ip"] in line, table

    # famous logs reads the engine's log on its node: what llama-server itself wrote there
    written = Path(replica["log_path"]).read_text(errors="replace").splitlines()
    shown = _cli(scaled, "logs", MODEL, "-n", "200").splitlines()
    header = next(i for i, ln in enumerate(shown) if ln.startswith("==> replica"))
    assert replica["node_id"][:12] in shown[header] and replica["log_path"] in shown[header]
    engine_lines = shown[header + 1 :]
    assert len(engine_lines) > 10 and set(engine_lines) <= set(written), engine_lines[-5:]
    assert any("llama" in ln for ln in engine_lines), engine_lines[-5:]
    assert any("deployed on Ray" in ln for ln in shown[:header]), shown[:header]

    # idle past the keep-alive: Ray scales the model to zero, its engine with it
    idle = time.monotonic()
    assert _wait_replicas(scaled, 0, 45) == []
    print(f"scaled to zero {time.monotonic() - idle:.1f} s after the logs were read")
    assert not psutil.pid_exists(replica["engine_pid"]) or _zombie(replica["engine_pid"])
    assert f"{MODEL}: no replica runs (scaled to zero" in _cli(scaled, "ps")

    started = time.monotonic()
    assert "Paris" in _ask(scaled)  # waits while Ray starts a replica, then is answered
    waited = time.monotonic() - started
    [again] = _wait_replicas(scaled, 1, 10)
    assert again["replica"] != replica["replica"] and again["engine_pid"] != replica["engine_pid"]
    print(f"scale from zero: the first request after it waited {waited:.1f} s")


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "2", "--max-replicas", "3"], "not both"),
        (["--min-replicas", "3", "--max-replicas", "2"], "--min-replicas (3) must not exceed"),
        (["--min-replicas", "-1"], "--min-replicas must be 0 or more"),
        (["--min-replicas", "0", "--keep-alive", "-1"], "--keep-alive is negative"),
    ],
)
def test_replica_options_are_checked(args: list[str], message: str) -> None:
    out = CliRunner().invoke(app, ["serve", "--ray", "auto", *args])
    assert out.exit_code == 2, out.output  # famous's exit status for invalid input
    assert message in out.stderr, out.stderr
    assert "famous gateway on" not in out.stderr  # refused before anything started


def test_scaling_options_need_ray() -> None:
    out = CliRunner().invoke(app, ["serve", "--min-replicas", "0"])
    assert out.exit_code == 2 and "--min-replicas apply only with --ray" in out.stderr


def test_autoscaling_config_is_rays_own() -> None:
    """What famous hands Ray Serve is a configuration Ray's own model accepts as meant."""
    scaling = scaling_options(None, 0, 3, 1.5, keep_alive=20.0)
    config = AutoscalingConfig(**deployment_scaling(scaling)["autoscaling_config"])
    assert (config.min_replicas, config.max_replicas, config.initial_replicas) == (0, 3, 1)
    assert config.target_ongoing_requests == 1.5
    # a replica goes about keep-alive seconds after its last request: the look-back window
    # (Ray decides on the requests it saw in it), then the down-scale delay
    assert config.look_back_period_s + config.downscale_to_zero_delay_s == 20.0
    assert config.downscale_delay_s == config.downscale_to_zero_delay_s
    assert deployment_scaling(scaling_options(2, None, None, None, 20.0)) == {"num_replicas": 2}
    # Serve hands a replica as many requests at once as its engine has slots
    assert max_ongoing({"parallel": 8}, scaling) == 8
    assert max_ongoing({}, scaling) > 5  # not Serve's default, which would queue the 6th
    with pytest.raises(InvalidInput, match="--max-replicas must be at least 1"):
        scaling_options(None, None, 0, None, 20.0)
