"""A model that fits no single node: vLLM's Ray backend, sized from the memory estimate.

The nodes are what Ray itself reports (``ray.nodes()`` of a real in-process Ray node whose
resources famous's detector read from a real machine's capture: a GTX 1080 Ti, nvidia-smi
11264 MiB, and two Intel GPUs); the configuration is the one ``vllm serve`` gets. The real
run (two GPU nodes, one model pipelined over both) is gpu-marked.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from famous.hardware.detector import detect
from famous.hardware.host import Host
from famous.runtimes.base import LaunchSpec
from famous.runtimes.vllm import VllmServer
from famous.serve.ray_serve.large import (
    NodeGpus,
    TooLargeForCluster,
    node_gpus,
    split_over_nodes,
)
from famous.serve.ray_serve.resources import node_resources

MACHINES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "machines").resolve()
if not MACHINES.is_dir():
    MACHINES = Path("/work/shared/machines")
ROOT = MACHINES / "i5-3570k+arc-a580+gtx1080ti" / "machine-root"
GIB = 1024**3


@pytest.fixture(scope="module")
def captured_node() -> Iterator[list[dict]]:
    """``ray.nodes()`` of a real Ray node offering the captured machine's resources."""
    resources = node_resources(detect(Host.from_env(str(ROOT))))
    ray.init(
        address="local",
        num_cpus=1,
        resources=resources,
        include_dashboard=False,
        object_store_memory=80 * 1000 * 1000,
        log_to_driver=False,
    )
    try:
        yield ray.nodes()
    finally:
        ray.shutdown()


def test_nodes_are_read_from_ray(captured_node: list[dict]) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    found = sorted(node_gpus(captured_node), key=lambda n: n.vendor)
    # 11264 MiB is 11 whole GiB; the two Arc/HD GPUs of Intel: 7 GiB of their own
    assert found == [
        NodeGpus(node_id, "intel", 2, 7 * GIB),
        NodeGpus(node_id, "nvidia", 1, 11 * GIB),
    ]


def test_split_from_the_estimate(captured_node: list[dict]) -> None:
    [gtx] = [n for n in node_gpus(captured_node) if n.vendor == "nvidia"]
    # 9.9 GiB of the 1080 Ti is vLLM's (0.9): an 8 GiB model fits it, no split
    assert split_over_nodes(8 * GIB, [gtx]) is None
    # 30 GiB over 1080 Ti nodes: ceil(30 / 9.9) = 4 pipeline stages of one GPU each
    four = [NodeGpus(f"n{i}", "nvidia", 1, 11 * GIB) for i in range(4)]
    split = split_over_nodes(30 * GIB, four)
    assert split == {
        "distributed_executor_backend": "ray",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 4,
    }
    with pytest.raises(TooLargeForCluster, match=r"4 such nodes would hold it"):
        split_over_nodes(30 * GIB, four[:3])
    # nodes of 3 x 24 GiB: tensor parallel 2 (a power of two), so 2/3 of each node's
    # 64.8 usable GiB = 43.2 GiB a stage; 70 GiB takes 2 stages
    three_gpus = [NodeGpus(f"m{i}", "nvidia", 3, 72 * GIB) for i in range(2)]
    assert split_over_nodes(70 * GIB, three_gpus) == {
        "distributed_executor_backend": "ray",
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
    }

    argv = VllmServer(split).command(LaunchSpec("big", Path("/models/big")), 8001)
    flags = dict(itertools.pairwise(argv))  # each word and the one after it
    assert flags["--distributed-executor-backend"] == "ray"
    assert flags["--pipeline-parallel-size"] == "4"
    assert flags["--tensor-parallel-size"] == "1"


def _gpus() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")])


@pytest.mark.gpu
def test_vllm_pipelined_over_two_gpu_nodes(tmp_path: Path) -> None:
    """Two Ray nodes of one GPU each, each claiming 1 GiB of VRAM for famous: a model of an
    estimated 1.5 GiB fits neither, so one vLLM runs it pipelined over both, and answers."""
    if _gpus() < 2 or importlib.util.find_spec("vllm") is None:
        pytest.skip("needs two NVIDIA GPUs and vLLM (pip install 'famous[vllm]')")
    import openai
    from ray_harness import launch_node, wait_port, wait_started

    from famous.runtimes.base import free_port
    from famous.serve.models import ModelSpec
    from famous.serve.ray_serve.launcher import RayCluster, RayLauncher, RayOptions

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
    from tiny_hf import write_llama

    model = write_llama(tmp_path / "tiny", hold_down_specials=True)
    claim = {"famous_vram_gib_nvidia": 1.0}
    base = dict(os.environ)
    head, address = launch_node("gpu-a", tmp_path, {**base, "CUDA_VISIBLE_DEVICES": "0"}, claim)
    nodes = [head]
    try:
        wait_port(address, head)
        worker, _ = launch_node(
            "gpu-b", tmp_path, {**base, "CUDA_VISIBLE_DEVICES": "1"}, claim, address
        )
        nodes.append(worker)
        wait_started(head)
        wait_started(worker)
        # the replica only launches vllm serve: it leaves the nodes' CPUs to vLLM's workers
        cluster = RayCluster(RayOptions(address, replica_cpus=0.1, http_port=free_port()))
        launcher = RayLauncher(cluster, startup_timeout=900)
        spec = ModelSpec(
            name="tiny-pp",
            path=model,
            runtime="vllm",
            engine="vllm",
            configuration={"max_model_len": 512, "enforce_eager": True},
            memory_bytes=int(1.5 * GIB),
        )
        engine = launcher(spec)
        asyncio.run(engine.wait_healthy_async(900))
        assert "pipeline parallel 2 x tensor parallel 1" in engine.reason
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{engine.port}{engine.path_prefix}/v1",
            api_key="unused",
            max_retries=0,
            timeout=600,
        )
        answer = client.chat.completions.create(
            model="tiny-pp", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
        assert answer.choices[0].message.content is not None
        [replica] = engine.placement()
        assert replica["server"] == "vllm serve", replica  # one replica; the GPUs: vLLM's
        engine.stop(30)
        cluster.close()
    finally:
        for node in reversed(nodes):
            node.stop()
