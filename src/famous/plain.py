"""Plain data for JSON: what the CLI's ``--format json`` and the gateway's console API print."""

from __future__ import annotations

from typing import Any


def to_plain(data: Any) -> Any:
    """pydantic models and containers of them -> JSON-ready Python values."""
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, dict):
        return {k: to_plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_plain(v) for v in data]
    return data
