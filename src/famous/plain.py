"""Plain data for JSON: what the CLI's ``--format json`` and the gateway's console API print."""

from __future__ import annotations

import dataclasses
from typing import Any


def to_plain(data: Any) -> Any:
    """pydantic models, dataclasses and containers of them -> JSON-ready Python values."""
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json", by_alias=True)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {f.name: to_plain(getattr(data, f.name)) for f in dataclasses.fields(data)}
    if isinstance(data, dict):
        return {k: to_plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_plain(v) for v in data]
    return data
