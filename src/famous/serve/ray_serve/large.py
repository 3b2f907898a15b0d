"""A model that fits no single node: vLLM's own Ray backend spreads it over several.

vLLM splits a model over the GPUs of one node (tensor parallel) and over nodes (pipeline
parallel), and with ``--distributed-executor-backend ray`` it places those workers on the
Ray cluster itself. famous sizes the split from the matchmaker's memory estimate and what
the nodes offer (``famous_gpu_<vendor>`` and ``famous_vram_gib_<vendor>``, which
``famous ray-start`` gives each node from its detector): nodes needed = estimate ÷ the
memory vLLM may use on one node, tensor parallel = that node's GPUs (a power of two, as
vLLM needs attention heads divisible by it). The one replica then only launches
``vllm serve``; the GPUs are vLLM's workers'. Every node must see the model's files at the
same path (a shared filesystem) or reach the Hub for them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from famous.errors import Unavailable

#: vLLM's default share of each GPU's memory it takes (``--gpu-memory-utilization``)
GPU_MEMORY_UTILIZATION = 0.9
_GPU = re.compile(r"^famous_gpu_(?P<vendor>[a-z0-9_]+)$")


class TooLargeForCluster(Unavailable):
    """A model whose estimate the cluster's GPUs together cannot hold."""


@dataclass(frozen=True)
class NodeGpus:
    """What one Ray node offers vLLM: its id, GPU vendor, GPU count and VRAM in all."""

    node_id: str
    vendor: str
    gpus: int
    vram_bytes: int


def node_gpus(nodes: list[dict[str, Any]]) -> list[NodeGpus]:
    """The famous nodes of ``ray.nodes()`` that are alive and have GPUs."""
    found = []
    for node in nodes:
        if not node.get("Alive", node.get("alive", False)):
            continue
        resources = node.get("Resources") or {}
        for key, count in resources.items():
            match = _GPU.match(key)
            if match is None or count < 1:
                continue
            vendor = match["vendor"]
            gib = float(resources.get(f"famous_vram_gib_{vendor}", 0.0))
            node_id = str(node.get("NodeID", ""))
            found.append(NodeGpus(node_id, vendor, int(count), int(gib * 1024**3)))
    return found


def _power_of_two_at_most(count: int) -> int:
    return 1 << (max(1, count).bit_length() - 1)


def split_over_nodes(
    memory_bytes: int, nodes: list[NodeGpus], utilization: float = GPU_MEMORY_UTILIZATION
) -> dict[str, Any] | None:
    """vLLM's configuration for a model of ``memory_bytes`` over ``nodes``: None when one
    node's GPUs hold it (a replica per node, as for any engine), else the Ray backend with
    tensor parallel over each node's GPUs and pipeline parallel over the nodes needed.

    The nodes taken are those of the vendor with the most VRAM in all, and each counts as
    the smallest of them (vLLM gives every pipeline stage the same tensor parallel size)."""
    if not nodes:
        return None
    usable = {n: int(n.vram_bytes * utilization) for n in nodes}
    if max(usable.values()) >= memory_bytes:
        return None
    by_vendor: dict[str, list[NodeGpus]] = {}
    for node in nodes:
        by_vendor.setdefault(node.vendor, []).append(node)
    vendor, group = max(by_vendor.items(), key=lambda kv: sum(usable[n] for n in kv[1]))
    tensor = _power_of_two_at_most(min(n.gpus for n in group))
    # a node whose GPUs are not all used (3 GPUs, tensor parallel 2) offers its share
    per_node = min(usable[n] * tensor // n.gpus for n in group)
    needed = math.ceil(memory_bytes / per_node) if per_node else len(group) + 1
    if needed > len(group):
        total = sum(usable[n] for n in group)
        raise TooLargeForCluster(
            f"the model needs about {memory_bytes / 1024**3:.1f} GiB of GPU memory; "
            f"{len(group)} {vendor} node(s) of the cluster offer {total / 1024**3:.1f} GiB "
            f"to vLLM ({needed} such nodes would hold it)",
            hint="join more GPU nodes with famous ray-start, or pick a smaller variant",
        )
    return {
        "distributed_executor_backend": "ray",
        "tensor_parallel_size": tensor,
        "pipeline_parallel_size": needed,
    }
