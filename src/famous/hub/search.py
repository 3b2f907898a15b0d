"""``famous search``: Hub search through huggingface_hub, with the formats each repo holds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from famous.hub import client
from famous.hub.errors import HubError, UnexpectedAnswer
from famous.hub.formats import classify

FORMAT_TAGS = {"gguf", "safetensors", "mlx", "openvino", "onnx", "tflite", "pte"}


class SearchHit(BaseModel):
    repo_id: str
    downloads: int = 0
    likes: int = 0
    formats: list[str] = Field(default_factory=list)
    parameters: int | None = Field(default=None, description="from the Hub's metadata, if known")
    size_bytes: int | None = Field(default=None, description="sum of file sizes, if known")
    gated: bool = False
    updated: str | None = None


def _formats(info: object) -> list[str]:
    found: set[str] = set()
    siblings = getattr(info, "siblings", None) or []
    kinds = classify(s.rfilename for s in siblings)
    found.update(k for k in kinds if k != "pickle")
    if kinds.get("pickle") and not kinds.get("safetensors"):
        found.add("pytorch")
    tags = set(getattr(info, "tags", None) or [])
    found.update(tags & FORMAT_TAGS)
    if getattr(info, "library_name", None) == "mlx" or "mlx" in tags:
        found.discard("safetensors")
        found.add("mlx")
    return sorted(found)


def _fetch(query: str, limit: int) -> list[Any]:
    """The Hub's search results, read whole here so a body that is not a list of models is
    reported as the server's fault (UnexpectedAnswer), never as a traceback."""
    expand = ["downloads", "likes", "tags", "library_name", "gated", "siblings", "lastModified"]
    try:
        return list(
            client.api().list_models(search=query, limit=limit, expand=expand, sort="downloads")
        )
    except HubError:
        raise
    except Exception as exc:
        mapped = client.unexpected_answer(exc, "search request") or client.translate(exc, query)
        if mapped is not None and not isinstance(exc, LookupError):
            raise mapped from exc
        if isinstance(exc, TypeError | KeyError | AttributeError | ValueError):
            answer = "JSON that is not a list of models"
            raise UnexpectedAnswer(client.endpoint(), "search request", answer) from exc
        raise


def search(query: str, *, format: str | None = None, limit: int = 20) -> list[SearchHit]:
    """Models matching ``query`` (most downloaded first), optionally only those in ``format``."""
    hits: list[SearchHit] = []
    for info in _fetch(query, limit * 4 if format else limit):
        formats = _formats(info)
        if format and format.lower() not in formats:
            continue
        siblings = getattr(info, "siblings", None) or []
        sizes = [s.size for s in siblings if getattr(s, "size", None)]
        params = None
        for key in ("safetensors", "gguf"):
            meta = getattr(info, key, None)
            total = getattr(meta, "total", None) if meta is not None else None
            if isinstance(meta, dict):
                total = meta.get("total")
            params = params or total
        modified = getattr(info, "last_modified", None)
        hits.append(
            SearchHit(
                repo_id=info.id,
                downloads=getattr(info, "downloads", 0) or 0,
                likes=getattr(info, "likes", 0) or 0,
                formats=formats,
                parameters=params,
                size_bytes=sum(sizes) if sizes and len(sizes) == len(siblings) else None,
                gated=bool(getattr(info, "gated", False)),
                updated=modified.date().isoformat() if modified else None,
            )
        )
        if len(hits) >= limit:
            break
    return hits
