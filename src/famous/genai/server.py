"""The famous-native engine: one safetensors model behind OpenAI's HTTP API.

Run it (the ``famous-native`` runtime adapter launches exactly this)::

    python -m famous.genai.server --model DIR [--host 127.0.0.1] [--port 8080]
        [--dtype fp32|bf16|fp16] [--max-seq-len 4096] [--threads N]
        [--served-model-name NAME] [--allow-pickle]

Lifecycle, for a supervisor:

* The model is loaded **before** the port opens: while loading, connections are refused.
  Once ``GET /health`` answers ``200 {"status": "ok", "model": NAME}`` the engine serves.
* A model that cannot be loaded (unknown ``model_type``, truncated shard, pickle without
  ``--allow-pickle`` …) prints ``error: …`` on stderr and exits with status 2; the port
  never opens.
* SIGINT / SIGTERM stop it cleanly (uvicorn's shutdown).

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` and
``POST /v1/completions`` (both with ``stream``; ``max_tokens`` / ``max_completion_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed``, and the extensions ``top_k``, ``min_p``,
``repetition_penalty``). Responses and errors use OpenAI's JSON and SSE shapes. Requests run
one at a time (one model, one KV cache). The ``model`` field of a request is not checked:
the gateway routes by it; the answer names ``--served-model-name`` (default: the folder name).
Binds 127.0.0.1 by default; it has no authentication of its own — put the gateway in front
of it to expose it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from famous.genai.sampling import SamplingParams


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class ChatBody(_Body):
    messages: list[dict[str, Any]]


class CompletionBody(_Body):
    prompt: str | list[str] | list[int]


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type_,
        )


def _error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "param": param, "code": code}},
    )


def _message_text(content: Any) -> str:
    """OpenAI content: a string or a list of parts; only text parts are supported."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise APIError(
                400, f"content part type {part.get('type')!r} is not supported", "messages"
            )
        parts.append(part.get("text", ""))
    return "".join(parts)


def create_app(pipeline: Any, model_name: str) -> FastAPI:
    """The FastAPI app around a loaded ``Pipeline`` (tests may build one directly)."""
    app = FastAPI(title="famous-native", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        return _error(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in first.get("loc", []) if x != "body"]
        return _error(
            400,
            f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}",
            param=".".join(loc) or None,
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        return _error(500, f"internal error: {e}", "server_error")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": model_name, "object": "model", "created": created, "owned_by": "famous"}
            ],
        }

    def params_of(body: _Body) -> SamplingParams:
        if body.n != 1:
            raise APIError(400, "only n=1 is supported", "n")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        limit = (
            body.max_completion_tokens
            if body.max_completion_tokens is not None
            else body.max_tokens
        )
        cap = pipeline.model.max_seq_len
        return SamplingParams(
            max_new_tokens=cap if limit is None else limit,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            min_p=body.min_p,
            repetition_penalty=body.repetition_penalty,
            seed=body.seed,
            stop=stop,
        )

    def run_stream(prompt: Any, params: SamplingParams, chat: bool) -> Iterator[Any]:
        with lock:
            try:
                yield from pipeline.stream(prompt, params, chat=chat)
            except ValueError as e:  # prompt longer than the context
                raise APIError(
                    400, str(e), "messages" if chat else "prompt", "context_length_exceeded"
                ) from e

    def check_fits(prompt: Any, chat: bool) -> None:
        n = len(pipeline.encode(prompt, chat))
        if n >= pipeline.model.max_seq_len:
            raise APIError(
                400,
                f"prompt has {n} tokens; this engine holds at most "
                f"{pipeline.model.max_seq_len - 1}",
                "messages" if chat else "prompt",
                "context_length_exceeded",
            )

    def collect(prompt: Any, params: SamplingParams, chat: bool) -> tuple[str, str, int, int]:
        text, finish, n = [], "length", 0
        for ev in run_stream(prompt, params, chat):
            text.append(ev.text)
            if ev.finish_reason:
                finish = ev.finish_reason
                n += 1 if (finish == "length" and ev.token_id is not None) else 0
            elif ev.token_id is not None:
                n += 1
        return "".join(text), finish, pipeline.last_prompt_tokens, n

    def sse(chunks: Iterator[dict[str, Any]]) -> StreamingResponse:
        def body() -> Iterator[str]:
            for c in chunks:
                yield f"data: {json.dumps(c)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    def chat_prompt(body: ChatBody) -> str:
        if not body.messages:
            raise APIError(400, "messages must not be empty", "messages")
        msgs = [{**m, "content": _message_text(m.get("content"))} for m in body.messages]
        from famous.genai.tokenizer import TemplateError

        try:
            return pipeline.chat_prompt(msgs)
        except TemplateError as e:
            raise APIError(400, str(e), "messages") from e

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatBody) -> Any:
        params = params_of(body)
        prompt = chat_prompt(body)
        check_fits(prompt, True)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "created": now, "model": model_name, "system_fingerprint": None}
        if not body.stream:
            text, finish, p, c = collect(prompt, params, True)
            return {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            }
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunks() -> Iterator[dict[str, Any]]:
            head = {**base, "object": "chat.completion.chunk"}
            yield {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
            n = 0
            for ev in run_stream(prompt, params, True):
                if ev.token_id is not None and (
                    ev.finish_reason is None or ev.finish_reason == "length"
                ):
                    n += 1
                if ev.text:
                    yield {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": ev.text},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                if ev.finish_reason:
                    yield {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {},
                                "logprobs": None,
                                "finish_reason": ev.finish_reason,
                            }
                        ],
                    }
            if include_usage:
                p = pipeline.last_prompt_tokens
                yield {
                    **head,
                    "choices": [],
                    "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
                }

        return sse(chunks())

    @app.post("/v1/completions")
    def completions(body: CompletionBody) -> Any:
        params = params_of(body)
        prompt: Any = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise APIError(400, "only one prompt per request is supported", "prompt")
            prompt = prompt[0]
        check_fits(prompt, False)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "created": now, "model": model_name, "system_fingerprint": None}
        if not body.stream:
            text, finish, p, c = collect(prompt, params, False)
            return {
                **base,
                "object": "text_completion",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            }

        def chunks() -> Iterator[dict[str, Any]]:
            for ev in run_stream(prompt, params, False):
                if ev.text or ev.finish_reason:
                    yield {
                        **base,
                        "object": "text_completion",
                        "choices": [
                            {
                                "index": 0,
                                "text": ev.text,
                                "logprobs": None,
                                "finish_reason": ev.finish_reason,
                            }
                        ],
                    }

        return sse(chunks())

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m famous.genai.server", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--model", required=True, help="model directory (config.json, safetensors, tokenizer.json)"
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    ap.add_argument(
        "--max-seq-len", type=int, default=4096, help="KV cache capacity (prompt + output)"
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    ap.add_argument(
        "--served-model-name", default=None, help="name in /v1/models (default: folder name)"
    )
    ap.add_argument("--allow-pickle", action="store_true", help="accept .bin / .pt checkpoints")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)

    from pathlib import Path

    from famous.genai.errors import GenAIError
    from famous.genai.pipeline import Pipeline

    try:
        pipe = Pipeline.from_pretrained(
            args.model,
            dtype=args.dtype,
            max_seq_len=args.max_seq_len,
            allow_pickle=args.allow_pickle,
            threads=args.threads,
        )
    except (GenAIError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    name = args.served_model_name or Path(args.model).resolve().name
    import uvicorn

    uvicorn.run(create_app(pipe, name), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
