"""The engine logs of a model's Ray replicas, read on the nodes that hold them.

A replica's engine writes its log into its own node's ``FAMOUS_HOME``, which the gateway's
machine may not see. ``replica_logs`` runs a small Ray task on each replica's node (pinned
there, taking no CPU, so it runs beside a replica that holds the node's CPUs) that reads
the tail of the file the replica recorded, or what was written since an offset (``famous
logs MODEL --follow`` polls with each replica's offset: a replica it has not seen yet, one
Ray started since, is read from its log's beginning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: seconds to wait for the nodes' answers (a node may need to start a worker first)
READ_TIMEOUT_S = 30.0
#: what each answer keeps of the replica's record
_KEEP = ("replica", "node_ip", "node_id", "engine", "server", "engine_pid", "log_path")


def read_part(path: str, lines: int, after: int | None) -> dict[str, Any]:
    """On this node (a Ray task): the last ``lines`` lines of ``path``, or with ``after``
    the whole lines written since that byte offset, and the offset to read on from."""
    from famous.services.deployments import read_log

    if not Path(path).is_file():
        return {"lines": [f"(no log at {path} on this node)"], "offset": 0}
    text, offset = read_log(Path(path), lines, after)
    return {"lines": text, "offset": offset}


def replica_logs(
    records: list[dict[str, Any]], lines: int, since: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Each replica (a ``placement`` record) with ``lines`` (its engine log's last lines, or
    with ``since`` — replica id to offset — what came after that offset) and ``offset``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(read_part)
    refs = [
        task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(r["node_id"], soft=False)
        ).remote(
            r.get("log_path", ""),
            lines,
            None if since is None else since.get(r["replica"], 0),
        )
        for r in records
    ]
    answers = []
    for record, ref in zip(records, refs, strict=True):
        try:
            part = ray.get(ref, timeout=READ_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            ray.cancel(ref, force=True)
            where = f"(could not read the log on node {record['node_ip']}: {exc})"
            part = {"lines": [where], "offset": (since or {}).get(record["replica"], 0)}
        answers.append({**{k: record.get(k) for k in _KEEP}, **part})
    return answers
