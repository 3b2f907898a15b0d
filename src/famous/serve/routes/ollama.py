"""Ollama's API (``/api/*``), for Ollama's clients (its Python and JS libraries, LangChain's
``ChatOllama``, editors that speak it), translated onto the OpenAI routes' ``answer``.

Reading routes (version, tags, show, ps) and inference need what the OpenAI routes need
(the API key when the gateway has one). The routes that change the catalog (pull, delete,
copy) need a credential even on loopback, as famous's admin routes do: the API key or the
install's admin token. ``/api/copy`` registers an alias for as long as the gateway runs; it
copies no file. Errors are Ollama's ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from famous import __version__
from famous.errors import FamousError
from famous.formats import gguf_meta
from famous.formats.projector import projector_beside
from famous.hub.formats import quantization_name
from famous.serve import openapi, sse
from famous.serve.context import GatewayContext, context
from famous.serve.errors import APIError, from_domain, invalid
from famous.serve.models import ModelSpec
from famous.serve.protocols import ollama
from famous.serve.protocols.ollama_pull import check_pull_name, pull_events
from famous.serve.request_checks import (
    check_name,
    parse_json,
    prefer_wait,
    read_body,
    shutting_down,
)
from famous.serve.routes.openai import answer

router = APIRouter()
_NDJSON = "application/x-ndjson"
_Handler = Callable[[Request], Awaitable[Any]]


def ollama_errors(handler: _Handler) -> _Handler:
    """The route answers its errors in Ollama's shape (the field named in the message)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Any:
        try:
            return await handler(request)
        except APIError as exc:
            return JSONResponse(ollama.error_body(exc), exc.status, headers=exc.headers)
        except FamousError as exc:
            error = from_domain(exc)
            return JSONResponse(ollama.error_body(error), error.status, headers=error.headers)

    return wrapped


async def _payload(request: Request, admin: bool = False) -> dict[str, Any]:
    gateway = context(request)
    if admin:
        gateway.authorize_admin(request)
    else:
        gateway.authorize(request)
    if gateway.draining:
        raise shutting_down(answer_began=False)
    return parse_json(await read_body(request, gateway.max_request_bytes, gateway.read_timeout))


# -- what a model is, as Ollama describes it ----------------------------------------------


@functools.lru_cache(maxsize=256)
def _file_facts(path: Path, mtime_ns: int) -> tuple[int, str, dict[str, Any]]:
    """(size, digest, GGUF metadata without arrays) of a model file or folder, read once per
    version of it. The digest names the version (path, size, time), not the bytes: hashing
    gigabytes per listing would stall it."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    gguf = path if path.suffix == ".gguf" else next((p for p in files if p.suffix == ".gguf"), None)
    meta: dict[str, Any] = {}
    if gguf is not None:
        with contextlib.suppress(OSError, gguf_meta.GGUFError):
            meta = gguf_meta.read_metadata(gguf)
    kept = {k: v for k, v in meta.items() if not isinstance(v, list | dict | bytes)}
    return size, digest, kept


def _facts(spec: ModelSpec) -> tuple[int, str, dict[str, Any], float]:
    try:
        mtime = spec.path.stat().st_mtime
        size, digest, meta = _file_facts(spec.path, spec.path.stat().st_mtime_ns)
    except OSError:
        return 0, "", {}, time.time()
    return size, digest, meta, mtime


def _details(spec: ModelSpec, meta: dict[str, Any]) -> dict[str, Any]:
    family = gguf_meta.architecture(meta) or spec.runtime
    count = meta.get("general.parameter_count")
    label = meta.get("general.size_label")
    if not isinstance(label, str):
        label = f"{count / 1e6:.0f}M" if isinstance(count, int) else ""
    return {
        "parent_model": "",
        "format": "gguf" if spec.path.suffix == ".gguf" or meta else spec.runtime,
        "family": family,
        "families": [family],
        "parameter_size": label,
        "quantization_level": quantization_name(meta.get("general.file_type")) or "",
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    """A model as ``/api/tags`` lists it."""
    size, digest, meta, mtime = _facts(spec)
    name = ollama.ollama_name(spec.name)
    return {
        "name": name,
        "model": name,
        "modified_at": _iso(mtime),
        "size": size,
        "digest": digest,
        "details": _details(spec, meta),
    }


def capabilities(spec: ModelSpec, meta: dict[str, Any]) -> list[str]:
    """What the model answers: embeddings, or completions (with tools, which the gateway
    handles for any chat model, and vision when a projector is beside the GGUF)."""
    if spec.embedding or gguf_meta.is_embedding_model(meta):
        return ["embedding"]
    found = ["completion", "tools"]
    if spec.path.is_file() and projector_beside(spec.path) is not None:
        found.append("vision")
    return found


@router.get("/api/version", **openapi.route())
@ollama_errors
async def version(request: Request) -> dict[str, Any]:
    context(request).authorize(request)
    return {"version": __version__}


@router.get("/api/tags", **openapi.route())
@ollama_errors
async def tags(request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize(request)
    specs = await asyncio.to_thread(gateway.scheduler.models.all)
    return {"models": await asyncio.to_thread(lambda: [model_entry(s) for s in specs])}


@router.post("/api/show", **openapi.route(openapi.OllamaModelRequest))
@ollama_errors
async def show(request: Request) -> dict[str, Any]:
    payload = await _payload(request)
    spec = context(request).scheduler.spec_for(ollama.model_name(payload.get("model")))
    _, _, meta, mtime = await asyncio.to_thread(_facts, spec)
    template = meta.pop("tokenizer.chat_template", "")
    return {
        "modelfile": f"FROM {spec.path}\n",
        "parameters": "",
        "template": template if isinstance(template, str) else "",
        "details": _details(spec, meta),
        "model_info": {k: v for k, v in meta.items() if not k.startswith("GGUF.")},
        "capabilities": capabilities(spec, meta),
        "modified_at": _iso(mtime),
    }


@router.get("/api/ps", **openapi.route())
@ollama_errors
async def ps(request: Request) -> dict[str, Any]:
    """Loaded models; ``size_vram`` is 0: famous does not measure what an engine keeps on a
    GPU."""
    gateway = context(request)
    gateway.authorize(request)
    scheduler = gateway.scheduler
    models = []
    for dep in list(scheduler.deployments.values()):
        if dep.state not in ("ready", "starting"):
            continue
        entry = await asyncio.to_thread(model_entry, dep.spec)
        idle_since = time.time() - (time.monotonic() - dep.last_used)
        entry["size"] = dep.spec.memory_bytes or entry["size"]
        entry["size_vram"] = 0
        entry["expires_at"] = ollama.expires_at(idle_since, scheduler.keep_alive_of(dep.name))
        models.append(entry)
    return {"models": models}


# -- inference ------------------------------------------------------------------------------


async def _chunks(response: Response) -> AsyncIterator[bytes]:
    if isinstance(response, StreamingResponse):
        async with contextlib.aclosing(response.body_iterator) as events:  # type: ignore[type-var]
            async for chunk in events:
                yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)
    else:
        yield bytes(response.body)


def _refused(response: Response, body: bytes) -> APIError:
    """An error ``answer`` answered (not raised): the engine refused the request."""
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    return APIError(response.status_code, str(message or body[:300].decode(errors="replace")))


async def translated(response: Response, stream: ollama.ChatStream) -> AsyncIterator[dict]:
    """Ollama's objects, each as soon as the OpenAI chunk it comes from arrives."""
    reader = sse.EventReader()
    async with contextlib.aclosing(_chunks(response)) as chunks:
        async for chunk in chunks:
            for event in sse.chunks(reader, chunk):
                if event is None:
                    if not stream.finished:
                        yield stream.final()
                    continue
                for obj in stream.feed(event):
                    yield obj
                if stream.finished:
                    return
    if not stream.finished:
        yield stream.final()


async def _ndjson(objects: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(objects):
        async for obj in objects:
            yield ollama.ndjson(obj)


async def _load_or_unload(
    gateway: GatewayContext, request: Request, name: str, keep: float | None, field: str
) -> dict[str, Any]:
    """Ollama's empty request: load the model, or with ``keep_alive: 0`` unload it."""
    scheduler = gateway.scheduler
    scheduler.spec_for(name)
    if keep == 0:
        await scheduler.stop(name)
        reason = "unload"
    else:
        scheduler.release(await scheduler.acquire(name, wait=prefer_wait(request)))
        reason = "load"
    done = ollama.ChatStream(name, field).final()
    return {k: done[k] for k in ("model", "created_at", field, "done")} | {"done_reason": reason}


async def _generation(request: Request, kind: str) -> Response:
    payload = await _payload(request)
    gateway = context(request)
    body = ollama.chat_request(payload) if kind == "chat" else ollama.generate_request(payload)
    name = body["model"]
    check_name(name, "model", "a model name from GET /api/tags")
    keep = ollama.keep_alive_seconds(payload.get("keep_alive"))
    field = "message" if kind == "chat" else "response"
    if keep is not None:
        gateway.scheduler.set_keep_alive(name, keep)
    if ollama.is_empty(payload, kind):
        return JSONResponse(await _load_or_unload(gateway, request, name, keep, field))
    openai_kind = "completions" if "prompt" in body else "chat"
    response = await answer(request, openai_kind, body)
    if response.status_code >= 400:  # the engine refused it: nothing streams
        raise _refused(response, b"".join([c async for c in _chunks(response)]))
    objects = translated(response, ollama.ChatStream(str(payload["model"]), field))
    if payload.get("stream", True) is not False:
        return StreamingResponse(_ndjson(objects), media_type=_NDJSON)
    whole = [obj async for obj in objects]
    if "error" in whole[-1]:
        return JSONResponse(whole[-1], status_code=502)
    return JSONResponse(ollama.merged(whole))


@router.post("/api/chat", **openapi.route(openapi.OllamaChatRequest, media_type=_NDJSON))
@ollama_errors
async def chat(request: Request) -> Response:
    return await _generation(request, "chat")


@router.post("/api/generate", **openapi.route(openapi.OllamaGenerateRequest, media_type=_NDJSON))
@ollama_errors
async def generate(request: Request) -> Response:
    return await _generation(request, "generate")


async def _embeddings(request: Request, legacy: bool) -> dict[str, Any]:
    started = time.monotonic_ns()
    payload = await _payload(request)
    name = ollama.model_name(payload.get("model"))
    body: dict[str, Any] = {"model": name, "input": ollama.embed_inputs(payload, legacy)}
    if payload.get("dimensions") is not None:
        body["dimensions"] = payload["dimensions"]
    keep = ollama.keep_alive_seconds(payload.get("keep_alive"))
    if keep is not None:
        context(request).scheduler.set_keep_alive(name, keep)
    response = await answer(request, "embeddings", body)
    content = b"".join([c async for c in _chunks(response)])
    if response.status_code >= 400:
        raise _refused(response, content)
    data = json.loads(content)
    vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d.get("index", 0))]
    if legacy:
        return {"embedding": vectors[0]}
    return {
        "model": payload["model"],
        "embeddings": vectors,
        "total_duration": time.monotonic_ns() - started,
        "load_duration": 0,
        "prompt_eval_count": int((data.get("usage") or {}).get("prompt_tokens") or 0),
    }


@router.post("/api/embed", **openapi.route(openapi.OllamaEmbedRequest))
@ollama_errors
async def embed(request: Request) -> dict[str, Any]:
    return await _embeddings(request, legacy=False)


@router.post("/api/embeddings", **openapi.route(openapi.OllamaEmbeddingsRequest))
@ollama_errors
async def embeddings(request: Request) -> dict[str, Any]:
    return await _embeddings(request, legacy=True)


# -- the catalog ----------------------------------------------------------------------------


@router.post(
    "/api/pull", **openapi.route(openapi.OllamaModelRequest, admin=True, media_type=_NDJSON)
)
@ollama_errors
async def pull(request: Request) -> Response:
    payload = await _payload(request, admin=True)
    name = ollama.model_name(payload.get("model") or payload.get("name"))
    check_name(name, "model", "a package name or a Hub repo id (ORG/NAME[:QUANT])")
    events = pull_events(check_pull_name(name))
    if payload.get("stream", True) is not False:
        return StreamingResponse(_ndjson(events), media_type=_NDJSON)
    last: dict[str, Any] = {}
    async for last in events:
        if "error" in last:
            return JSONResponse(last, status_code=400)
    return JSONResponse(last)


@router.delete("/api/delete", **openapi.route(openapi.OllamaModelRequest, admin=True))
@ollama_errors
async def delete(request: Request) -> Response:
    """The model's artifacts are removed (its engine stopped first); an alias or a file
    registered with the gateway is forgotten, its file left where it is."""
    from famous.store.artifacts import remove_artifacts

    payload = await _payload(request, admin=True)
    name = ollama.model_name(payload.get("model") or payload.get("name"))
    scheduler = context(request).scheduler
    registry = scheduler.models
    await scheduler.stop(name)
    if registry.unregister(name):
        return JSONResponse({})
    removed = await asyncio.to_thread(remove_artifacts, name)
    if not removed:
        return JSONResponse({"error": f"model {payload.get('model')!r} not found"}, 404)
    gone = {Path(a.path).resolve() for a in removed}
    for spec in registry.all():
        if spec.source == "alias" and spec.path in gone:
            registry.unregister(spec.name)
    return JSONResponse({})


@router.post("/api/copy", **openapi.route(openapi.OllamaCopyRequest, admin=True))
@ollama_errors
async def copy(request: Request) -> Response:
    """``destination`` becomes another name of ``source`` until the gateway stops; no file
    is copied (famous's catalog keeps one copy of each artifact)."""
    payload = await _payload(request, admin=True)
    scheduler = context(request).scheduler
    source = scheduler.spec_for(ollama.model_name(payload.get("source"), "source"))
    target = ollama.model_name(payload.get("destination"), "destination")
    check_name(target, "destination", "the new name")
    existing = scheduler.models.get(target)
    if existing is not None and existing.source != "alias":
        raise invalid(f"destination {target!r} is an installed model's name", "destination")
    alias = replace(source, name=target, source="alias", artifact_id=None)
    await asyncio.to_thread(scheduler.models.register, alias)
    return JSONResponse({})
