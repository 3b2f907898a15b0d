"""The engine logs of a model's Ray replicas, read on the nodes that hold them.

A replica's engine writes its log into its own node's ``FAMOUS_HOME``, which the gateway's
machine may not see. ``replica_logs`` runs a small Ray task on each replica's node (pinned
there, taking no CPU, so it runs beside a replica that holds the node's CPUs) that reads
the tail of the file the replica recorded; ``famous logs MODEL`` shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: seconds to wait for the nodes' answers (a node may need to start a worker first)
READ_TIMEOUT_S = 30.0


def read_tail(path: str, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` on this node (runs as a Ray task there)."""
    from famous.store.deployments import tail

    if not Path(path).is_file():
        return [f"(no log at {path} on this node)"]
    return tail(Path(path), lines)


def replica_logs(records: list[dict[str, Any]], lines: int) -> list[dict[str, Any]]:
    """Each replica (a ``placement`` record) with ``lines``: its engine log's last lines."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(read_tail)
    refs = [
        task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(r["node_id"], soft=False)
        ).remote(r.get("log_path", ""), lines)
        for r in records
    ]
    answers = []
    for record, ref in zip(records, refs, strict=True):
        try:
            text = ray.get(ref, timeout=READ_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            ray.cancel(ref, force=True)
            text = [f"(could not read the log on node {record['node_ip']}: {exc})"]
        keep = ("replica", "node_ip", "node_id", "engine", "server", "engine_pid", "log_path")
        answers.append({**{k: record.get(k) for k in keep}, "lines": text})
    return answers
