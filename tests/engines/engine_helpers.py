"""Small helpers the engine tests share (a module, not conftest: its name is unique)."""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from pathlib import Path


def has_module(name: str) -> bool:
    """Whether ``name`` is importable, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def register(gateway, name: str, path: Path, runtime: str, **configuration: object) -> None:
    """Tell the running gateway about a model directory served by ``runtime``."""
    body = {"name": name, "path": str(path), "runtime": runtime, "configuration": configuration}
    request = urllib.request.Request(
        gateway.url + "/famous/api/models",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **gateway.admin},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as resp:
        assert resp.status == 200


def streamed(stream) -> tuple[str, str | None, int]:
    parts, finish, chunks = [], None, 0
    for event in stream:
        for choice in event.choices:
            piece = choice.delta.content if hasattr(choice, "delta") else choice.text
            if piece:
                parts.append(piece)
                chunks += 1
            finish = choice.finish_reason or finish
    return "".join(parts), finish, chunks
