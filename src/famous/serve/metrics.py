"""The gateway's Prometheus text: per model, requests, in-flight requests, state, load time,
failed starts and crashes."""

from __future__ import annotations

from collections.abc import Iterable

from famous.serve.scheduler import Deployment

_TYPES = [
    ("famous_requests_total", "counter"),
    ("famous_active_requests", "gauge"),
    ("famous_model_loaded", "gauge"),
    ("famous_model_load_seconds", "gauge"),
    ("famous_engine_failures", "gauge"),
    ("famous_engine_crashes", "counter"),
]


def _label(name: str) -> str:
    """A label value may hold any text: backslash, quote and newline are escaped, so a model
    name cannot inject lines."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{{model="{escaped}"}}'


def prometheus_text(deployments: Iterable[Deployment]) -> str:
    lines = [f"# TYPE {metric} {kind}" for metric, kind in _TYPES]
    for dep in deployments:
        label = _label(dep.name)
        lines += [
            f"famous_requests_total{label} {dep.requests}",
            f"famous_active_requests{label} {dep.active}",
            f"famous_model_loaded{label} {1 if dep.state == 'ready' else 0}",
            f"famous_model_load_seconds{label} {dep.last_load_seconds or 0:.3f}",
            f"famous_engine_failures{label} {len(dep.failures)}",
            f"famous_engine_crashes{label} {dep.crashes}",
        ]
    return "\n".join(lines) + "\n"
