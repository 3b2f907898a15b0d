"""Liveness and metrics: ``GET /health`` (always answers) and ``GET /metrics``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from famous import __version__
from famous.serve import openapi
from famous.serve.context import context
from famous.serve.metrics import prometheus_text

router = APIRouter()


@router.get("/metrics", **openapi.route(media_type="text/plain"))
async def metrics(request: Request) -> Response:
    """Prometheus text: per-model requests, in-flight requests, state and load time."""
    gateway = context(request)
    gateway.authorize(request)
    text = prometheus_text(gateway.scheduler.deployments.values())
    return Response(text, media_type="text/plain; version=0.0.4")


@router.get("/health", **openapi.route())
async def health(request: Request) -> dict[str, Any]:
    """Always answers (it is the liveness probe); which models exist only with the key."""
    gateway = context(request)
    answer: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "uptime_seconds": round(time.time() - gateway.started, 1),
    }
    if gateway.has_key(request):
        answer["models"] = {d["name"]: d["state"] for d in gateway.scheduler.snapshot()}
    return answer
