"""What ``famous ps`` and ``famous status`` print: running deployments, and the gateway."""

from __future__ import annotations

from famous.cli.render import OutputFormat, emit, print_table
from famous.units import format_duration, format_size


def _print_reasons(rows: list[dict]) -> None:
    """Why each model runs on its server (llama-server, or llama_cpp.server and why not)."""
    reasons = [r for r in rows if r.get("server_reason")]
    if reasons:
        print("")
    for r in reasons:
        print(f"{r['name']} runs on {r['server']}: {r['server_reason']}")


def ps(fmt: OutputFormat) -> None:
    """Running deployments: engine, runtime, server (and why it), pid, port, memory, uptime;
    for models on a Ray cluster, each replica: its node, engine and variant."""
    from famous.services.deployments import cluster_deployments, running_deployments

    rows = running_deployments() + cluster_deployments()

    def table() -> None:
        print_table(
            ["name", "engine", "runtime", "server", "pid", "port", "status", "memory", "uptime"],
            [
                [
                    r["name"],
                    r["engine"],
                    r["runtime"],
                    r["server"],
                    r["pid"],
                    r["port"],
                    r["status"],
                    format_size(r["memory_bytes"]),
                    format_duration(r["uptime_seconds"]),
                ]
                for r in rows
            ],
        )
        _print_reasons(rows)
        _print_replicas(rows)

    emit(rows, fmt, table)


def _print_replicas(rows: list[dict]) -> None:
    """The replicas of the models deployed on Ray, by node."""
    replicas = [(r["name"], rep) for r in rows for rep in r.get("replicas") or []]
    for r in rows:
        if r.get("replicas") == []:
            print(f"\n{r['name']}: no replica runs (scaled to zero; a request starts one)")
    if not replicas:
        return
    print("")
    print_table(
        ["name", "node", "node id", "engine", "variant", "server", "replica pid", "engine pid"],
        [
            [
                name,
                rep["node_ip"],
                rep["node_id"][:12],
                rep["engine"],
                rep["variant"],
                rep["server"],
                rep["pid"],
                rep["engine_pid"],
            ]
            for name, rep in replicas
        ],
    )


def _print_status(gateway: dict, deployments: list[dict]) -> None:
    print(
        f"gateway: running at {gateway['url']} (pid {gateway['pid']})"
        if gateway["running"]
        else "gateway: not running (famous serve, or famous run MODEL)"
    )
    if not deployments:
        print("deployments: none")
        return
    columns = ["name", "status", "engine", "runtime", "server", "pid", "port"]
    print_table(columns, [[d[c] for c in columns] for d in deployments])
    _print_reasons(deployments)
    for d in deployments:
        if d.get("last_log_lines"):
            print(f"\n{d['name']} is {d['status']}; last lines of {d['log_path']}:")
            for line in d["last_log_lines"]:
                print(f"  {line}")


def status(fmt: OutputFormat) -> None:
    """The gateway and every deployment, as the processes themselves report (not as recorded)."""
    from famous.services.deployments import deployment_health
    from famous.services.gateway import running_gateway

    info = running_gateway()
    deployments = deployment_health()
    gateway = (
        {"running": True, "url": info.url + "/v1", "pid": info.pid} if info else {"running": False}
    )
    data = {"gateway": gateway, "deployments": deployments}
    emit(data, fmt, lambda: _print_status(gateway, deployments))
