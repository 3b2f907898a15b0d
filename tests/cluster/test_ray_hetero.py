"""Two models on two Ray nodes, a different engine chosen on each node by its own facts.

The nodes run on this one machine, so they are made to differ the way real nodes do: node-b
is started with ``famous ray-start --root`` a captured machine (an i5-3570K, Ivy Bridge: AVX
but no AVX2; read in place from ``shared/machines``), and its replicas inherit that view.
Both models are the same package (``hetero_package``: llama.cpp on the Q4_1 GGUF where the
CPU has AVX2, famous-native on the fp32 safetensors elsewhere), and ``--ray-place`` puts
smol-a on node-a (which offers the ``node_a`` resource) and smol-b on node-b. Each replica
runs famous's detector and matchmaker on its node and pulls only its engine's files from
the test Hub into its node's FAMOUS_HOME: node-a picks llama.cpp (llama-server), node-b
famous-native, which runs on this real CPU. ``famous ps`` shows it, the engines answer
through the gateway (the official ``openai`` client), and ``famous logs --follow`` prints
a replica's new engine lines, prefixed with its replica and node, until it is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "lifecycle", HERE.parent / "realweights"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import ray_harness as ray_cluster  # noqa: E402
from hetero_package import GGUF_NAME, hub_repos, write_package  # noqa: E402
from hub_server import HubServer, environment  # noqa: E402
from ray_harness import RayNode, harness  # noqa: E402
from realweights_helpers import CHAT, names_paris  # noqa: E402

from famous.services.deployments import replica_prefix  # noqa: E402
from provision import smollm2_gguf, smollm2_hf_dir  # noqa: E402

pytestmark = [pytest.mark.slow]

MODELS = {"smol-a": "node_a", "smol-b": "node_b"}
#: a captured machine whose CPU lacks AVX2 (Intel Core i5-3570K)
CAPTURE = HERE.parents[1].parent / "shared" / "machines" / "i5-3570k+arc-a580+gtx1080ti"


@dataclass
class Hetero:
    root: Path
    env: dict[str, str]
    hub: HubServer
    nodes: dict[str, RayNode] = field(default_factory=dict)
    gateway: harness.Gateway | None = None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> str:
        assert self.gateway is not None
        out = harness.famous_cli(self.gateway.home, *args, env=env or self.gw_env, timeout=90)
        assert out.returncode == 0, out.stderr
        return out.stdout

    @property
    def gw_env(self) -> dict[str, str]:
        return {**self.env, "FAMOUS_HOME": str(self.root / "gateway")}


@pytest.fixture(scope="module")
def hetero(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hetero]:
    root = tmp_path_factory.mktemp("ray-hetero")
    capture = CAPTURE / "machine-root"
    assert (capture / "proc" / "cpuinfo").is_file(), f"the machine captures are missing: {CAPTURE}"
    hub = HubServer().start()
    for repo, files in hub_repos(smollm2_gguf(), smollm2_hf_dir()).items():
        hub.add_repo(repo, files)
    env = {**harness.famous_env(root, "llama-server"), **environment(hub)}
    env.pop("HF_TOKEN", None)
    state = Hetero(root, ray_cluster.with_ray_token(env, root), hub)
    for home in ("node-a", "node-b", "gateway"):  # the package, as installed on each machine
        for model in MODELS:
            write_package(root / home, model)
    try:
        head, address = ray_cluster.launch_node("node-a", root, env, {"node_a": 1})
        state.nodes["node-a"] = head
        pulls = [  # meanwhile the gateway's own catalog gets the models (its machine's pick)
            subprocess.Popen(
                [sys.executable, "-m", "famous", "pull", model],
                env=state.gw_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for model in MODELS
        ]
        ray_cluster.wait_port(address, head)
        worker, _ = ray_cluster.launch_node(
            "node-b", root, env, {"node_b": 1}, address, famous_args=("--root", str(capture))
        )
        state.nodes["node-b"] = worker
        for pull in pulls:
            _, errors = pull.communicate(timeout=180)
            assert pull.returncode == 0, errors
        ray_cluster.wait_started(head)
        args = ["--keep-alive", "-1"]
        for model, resource in MODELS.items():
            args += ["--ray-place", f"{model}={resource}"]
        state.gateway = ray_cluster.start_ray_gateway(state.gw_env, address, args)
        ray_cluster.wait_started(worker)
        yield state
    finally:
        if state.gateway is not None:
            harness.stop_gateway(state.gateway)
        for node in reversed(list(state.nodes.values())):
            node.stop()
        hub.stop()
        assert ray_cluster.leftover(list(state.nodes.values())) == []


def _client(state: Hetero) -> openai.OpenAI:
    assert state.gateway is not None
    return openai.OpenAI(base_url=state.gateway.v1, api_key="unused", max_retries=0, timeout=300)


def _ask(state: Hetero, model: str) -> str:
    answer = _client(state).chat.completions.create(
        model=model, messages=CHAT, max_tokens=24, temperature=0
    )
    return answer.choices[0].message.content or ""


def _replica(state: Hetero, model: str) -> dict:
    rows = [r for r in json.loads(state.cli("ps", "--format", "json")) if r["name"] == model]
    assert len(rows) == 1 and len(rows[0]["replicas"]) == 1, rows
    return rows[0]["replicas"][0]


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(home: Path, pattern: str) -> list[Path]:
    return sorted((home / "models").rglob(pattern))


def test_each_node_picks_its_own_engine(hetero: Hetero) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:  # both deploy at once, each on its node
        answers = dict(zip(MODELS, pool.map(lambda m: _ask(hetero, m), MODELS), strict=True))
    print(f"both models deployed and answered in {time.monotonic() - started:.1f} s: {answers}")
    assert all(names_paris(text) for text in answers.values()), answers

    a, b = _replica(hetero, "smol-a"), _replica(hetero, "smol-b")
    node_a, node_b = hetero.nodes["node-a"], hetero.nodes["node-b"]
    assert a["node_id"] != b["node_id"]
    # each replica ran on the node --ray-place asked for (its engine logs into that home)
    assert Path(a["log_path"]).is_relative_to(node_a.home), a
    assert Path(b["log_path"]).is_relative_to(node_b.home), b
    picked = [(r["engine"], r["runtime"], r["variant"], r["server"]) for r in (a, b)]
    print(f"node-a chose {picked[0]}; node-b chose {picked[1]}")
    assert picked[0] == ("cpu-avx2", "llamacpp", "q4_1", "llama-server")
    assert picked[1][:3] == ("native-cpu", "famous-native", "f32")
    table = hetero.cli("ps")  # the table says which engine runs on which node
    for replica in (a, b):
        line = next(ln for ln in table.splitlines() if replica["node_id"][:12] in ln)
        assert replica["engine"] in line and replica["server"] in line, table

    # node-b's own matchmaker, asked on its machine view, says why
    engines = json.loads(
        hetero.cli(
            "engines",
            "smol-b",
            "--format",
            "json",
            env={
                **hetero.env,
                "FAMOUS_HOME": str(node_b.home),
                "FAMOUS_HARDWARE_ROOT": str(CAPTURE / "machine-root"),
            },
        )
    )
    verdicts = {e["engine"]: e for e in engines}
    assert "flag avx2 missing" in json.dumps(verdicts["cpu-avx2"]), verdicts["cpu-avx2"]

    # each node fetched only its chosen engine's files, verified against the sources
    assert [p.name for p in _files(node_a.home, "*.gguf")] == [GGUF_NAME]
    assert _sha256(_files(node_a.home, "*.gguf")[0]) == _sha256(smollm2_gguf())
    assert _files(node_a.home, "*.safetensors") == []
    assert _files(node_b.home, "*.gguf") == []
    [weights] = _files(node_b.home, "*.safetensors")
    assert _sha256(weights) == _sha256(smollm2_hf_dir() / "model.safetensors")

    # famous-native streams through Ray as well; greedy, so the stream is the answer
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in _client(hetero).chat.completions.create(
            model="smol-b", messages=CHAT, max_tokens=24, temperature=0, stream=True
        )
        if chunk.choices
    ]
    assert len(pieces) > 3 and "".join(pieces) == answers["smol-b"]


def _lines(stream) -> queue.Queue[str | None]:
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for raw in stream:
            found.put(raw.rstrip("\n"))
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return found


def _until(lines: queue.Queue[str | None], want, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        assert line is not None, f"famous logs --follow ended: {seen[-10:]}"
        seen.append(line)
        if want(line):
            return seen
    raise AssertionError(f"not seen in {timeout} s; last lines: {seen[-10:]}")


def test_logs_follow_prints_new_replica_lines(hetero: Hetero) -> None:
    replica = _replica(hetero, "smol-a")
    prefix = replica_prefix(replica)
    follower = subprocess.Popen(
        [sys.executable, "-m", "famous", "logs", "smol-a", "--follow", "-n", "3"],
        env=hetero.gw_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(follower.stdout)
        _until(lines, lambda ln: ln.startswith("==> replica"), 60)
        # what is written from now on: a request makes llama-server log its slot's work
        assert names_paris(_ask(hetero, "smol-a"))
        new = _until(lines, lambda ln: ln.startswith(prefix), 30)
        followed = [ln[len(prefix) + 1 :] for ln in new if ln.startswith(prefix)]
        written = Path(replica["log_path"]).read_text(errors="replace").splitlines()
        assert followed and set(followed) <= set(written), followed
        follower.send_signal(signal.SIGINT)  # Ctrl-C: the follower stops cleanly
        assert follower.wait(timeout=15) == 0
        errors = follower.stderr.read() if follower.stderr else ""
        assert "Traceback" not in errors, errors
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
