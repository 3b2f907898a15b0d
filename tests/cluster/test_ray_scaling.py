"""Autoscaling on a real Ray cluster (one node on 127.0.0.1): ``famous serve --ray ADDRESS
--min-replicas 0`` serves the real SmolLM2 GGUF on llama-server through Ray Serve; the first
request (the official ``openai`` client) loads it, Ray scales it to zero once the keep-alive
passed (its engine goes), and the next request waits while Ray starts a replica again, then
gets its answer. ``famous logs`` shows the replica's engine log, read on its node, and
``famous ps`` the replica's node and engine. A request's own ``keep_alive`` (Ollama's) means
what it says: shorter than Ray's down-scale delay, the gateway unloads the model once idle
that long; longer (or forever), which Ray Serve's per-deployment delay cannot honour at a
minimum of zero replicas, it is refused, also when a hostile client sends it. The replica
options are checked before the gateway starts, and mapped to what Ray Serve's own
autoscaling configuration accepts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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
from famous.serve.models import ModelRegistry, ModelSpec  # noqa: E402
from famous.serve.ray_serve.launcher import RayCluster, RayLauncher, RayOptions  # noqa: E402
from famous.serve.ray_serve.resources import placement_options, replica_options  # noqa: E402
from famous.serve.ray_serve.scaling import (  # noqa: E402
    KeepAliveRefused,
    deployment_scaling,
    max_ongoing,
    scaling_options,
)
from famous.serve.scheduler import Scheduler  # noqa: E402
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


def _generate(
    state: Scaled, body: bytes | dict, route: str = "/api/generate", **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **headers}
    url = state.gateway.url + route
    return httpx.post(url, content=content, headers=headers, timeout=300, trust_env=False)


def test_request_keep_alive_on_ray(scaled: Scaled) -> None:
    """Runs after the scale-from-zero test (module order): the model is deployed."""
    body = {"model": MODEL, "prompt": "The capital of France is", "stream": False}
    body["options"] = {"num_predict": 4, "temperature": 0}
    # longer than Ray's down-scale delay (4 s), or forever: refused, naming keep_alive
    for keep in (3600, -1, "1h", 1e308, 4.5):
        resp = _generate(scaled, {**body, "keep_alive": keep})
        assert resp.status_code == 400, (keep, resp.text)
        message = resp.json()["error"]
        assert "keep_alive" in message and "down-scale delay" in message, message
        assert "--min-replicas 1" in message, message
    # what a hostile client sends along with it never reaches the check, or is refused
    hostile = [
        (json.dumps({**body, "keep_alive": 3600}).encode(), {"content-type": "text/plain"}, 415),
        (json.dumps({**body, "keep_alive": 3600}).encode(), {"host": "evil.example"}, 403),
        (b'{"model": "smol", "keep_alive": ' + b"[" * 1000 + b"]" * 1000 + b"}", {}, 400),
        (b'{"model": "smol", "prompt": "x", "keep_alive": 1e999}', {}, 400),
        (b'{"model": "smol", "prompt": "x", "keep_alive": ' + b"9" * 5000 + b"}", {}, 400),
        (json.dumps({**body, "keep_alive": 3600, "extra": {"a": 1}}).encode(), {}, 400),
    ]
    for raw, headers, status in hostile:
        resp = _generate(scaled, raw, **headers)
        assert resp.status_code == status, (raw[:80], resp.text[:300])
        assert "Traceback" not in resp.text
    for name in ("../smol", "a\x00b", "x" * 10_000, "nope"):
        resp = _generate(scaled, {**body, "model": name, "keep_alive": 1})
        assert resp.status_code in (400, 404), (name[:20], resp.text[:300])
    assert [d["name"] for d in scaled.gateway.ps()] == [MODEL]  # nothing else was deployed

    # shorter: honoured by the gateway, which unloads the model once it was idle that long
    chat = {"model": MODEL, "messages": CHAT, "stream": False, "keep_alive": 1}
    resp = _generate(
        scaled, {**chat, "options": {"num_predict": 24, "temperature": 0}}, "/api/chat"
    )
    assert resp.status_code == 200 and "Paris" in resp.json()["message"]["content"], resp.text
    answered = time.monotonic()
    while _state(scaled) == "ready" and time.monotonic() < answered + 20:
        time.sleep(0.1)
    began = time.monotonic() - answered  # the gateway began unloading (deleting the app)
    while "unloaded after 1 s idle" not in scaled.gateway.log():
        assert time.monotonic() < answered + 30, scaled.gateway.log()[-2000:]
        time.sleep(0.5)
    done = time.monotonic() - answered
    print(f"unloading began {began:.1f} s after the answer, done at {done:.1f} s (Ray's own")
    print("scale to zero waits 4 s of idle, then drains the replica for 5 s)")
    assert began < KEEP_ALIVE, "the request's 1 s keep-alive did not unload before Ray's 4 s"
    assert _state(scaled) == "stopped"


def _state(state: Scaled) -> str:
    return next(d["state"] for d in state.gateway.ps() if d["name"] == MODEL)


def test_request_keep_alive_checked_by_the_launcher() -> None:
    """The scheduler asks Ray's launcher before it records a request's keep_alive (no Ray
    contacted: the check reads the options)."""
    spec = ModelSpec(name="m", path=smollm2_gguf())

    def scheduler(scaling) -> Scheduler:
        cluster = RayCluster(RayOptions("127.0.0.1:1", scaling))
        return Scheduler(ModelRegistry([spec], use_store=False), launcher=RayLauncher(cluster))

    to_zero = scheduler(scaling_options(None, 0, 2, None, keep_alive=30.0))
    for keep in (31.0, -1.0):
        with pytest.raises(KeepAliveRefused, match="down-scale delay"):
            to_zero.set_keep_alive("m", keep)
    assert "m" not in to_zero.keep_alive_for
    to_zero.set_keep_alive("m", 30.0)
    to_zero.set_keep_alive("m", 0.0)
    assert to_zero.keep_alive_for == {"m": 0.0}
    # a minimum of one replica, or a fixed count: Ray keeps the model, any keep_alive holds
    for scaling in (
        scaling_options(None, 1, 2, None, 30.0),
        scaling_options(2, None, None, None, 30.0),
    ):
        kept = scheduler(scaling)
        kept.set_keep_alive("m", -1.0)
        kept.set_keep_alive("m", 3600.0)
        assert kept.keep_alive_for == {"m": 3600.0}


def test_ray_place_options() -> None:
    assert placement_options(["a=rack_a", "a=gpu_big", "org/b:q4=rack_b"]) == {
        "a": ["rack_a", "gpu_big"],
        "org/b:q4": ["rack_b"],
    }
    options = replica_options(None, 1.0, ["rack_a"])
    assert options["resources"] == {"famous_node": 1.0, "rack_a": 0.01}
    for bad in ("a", "=rack", "a=", "a=famous_node", "a=1rack", "a=rack a", "a=" + "r" * 65):
        with pytest.raises(InvalidInput, match="--ray-place"):
            placement_options([bad])
    out = CliRunner().invoke(app, ["serve", "--ray-place", "a=rack_a"])
    assert out.exit_code == 2 and "--ray-place apply only with --ray" in out.stderr
