"""OpenAI's HTTP API around any text generator: the shared half of famous's engine workers.

The transformers and OpenVINO workers differ only in how they turn a prompt into text
pieces; everything a client sees (request validation, chat / completion JSON, SSE chunks,
stop sequences, usage, errors in OpenAI's shape) lives here once. A worker implements
``Backend`` and calls ``serve(create_app(backend, name), host, port)`` after its model is
loaded, so the port only opens once the engine can answer (the supervisor's health wait).

This module imports FastAPI, pydantic and ``famous.genai.streaming`` (UTF-8-safe decoding,
stop sequences) only: no engine library, no torch.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from famous.api_errors import APIError, invalid
from famous.genai.streaming import IncrementalDecoder, StopScanner

DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request, already validated (temperature 0 = greedy)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # extensions some engines honour (famous-native): min-p sampling, CTRL repetition penalty
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Piece:
    """Text the backend produced since the last piece.

    ``tokens`` counts the generated tokens this piece stands for (a backend that cannot
    tell per piece may report them all on its last piece); ``finish_reason`` is set on the
    last piece only: ``"stop"`` (end-of-sequence) or ``"length"`` (``max_tokens`` reached).
    """

    text: str
    tokens: int = 1
    finish_reason: str | None = None


class Backend(Protocol):
    """What a worker's engine must offer; generation is serialized by ``create_app``."""

    def context_length(self) -> int | None:
        """Most tokens (prompt + answer) the model holds, or None when unknown."""

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The model's own chat template applied, with the assistant turn opened."""

    def count_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` as ``generate`` will feed it."""

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[Piece]:
        """Stream pieces; closing the iterator early must stop the generation."""


class EmbeddingBackend(Protocol):
    """Optional: a backend with ``embed`` also answers ``POST /v1/embeddings``."""

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One vector per text, and the tokens read (over all texts) for ``usage``."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class ChatBody(_Body):
    messages: list[dict[str, Any]] = Field(min_length=1)


class CompletionBody(_Body):
    prompt: str | list[str]


class EmbeddingBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


def embedding_texts(value: Any) -> list[str]:
    """The texts of an embeddings request; token-id input and empty strings are refused."""
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise invalid("input must not be empty", "input")
    if not all(isinstance(t, str) for t in texts):
        raise invalid("token-id input is not supported by this engine; send text", "input")
    if any(t == "" for t in texts):
        raise invalid("input must not contain empty strings", "input")
    return texts


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """``float``: the list; ``base64``: little-endian float32 bytes, as OpenAI sends them."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def message_text(content: Any) -> str:
    """OpenAI message content (a string or a list of parts) as plain text."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise invalid("message content must be a string or a list of parts", "messages")
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise invalid(f"content part type {kind!r} is not supported", "messages")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def pieces_from_queue(
    tokens: queue.Queue[Any],
    decoder: IncrementalDecoder,
    eos_ids: set[int],
    max_tokens: int,
    cancel: threading.Event,
    thread: threading.Thread,
) -> Iterator[Piece]:
    """Text pieces from the token ids a generation ``thread`` puts on ``tokens`` (None when
    it is done, an exception when it failed). Stopping early cancels and joins the thread."""
    produced = 0
    finish = "length"
    try:
        while True:
            item = tokens.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if item in eos_ids:
                finish = "stop"
                break
            produced += 1
            yield Piece(decoder.push(item), tokens=1)
        rest = decoder.flush()
        if produced >= max_tokens:
            finish = "length"
        yield Piece(rest, tokens=0, finish_reason=finish)
    finally:
        cancel.set()
        thread.join()


@dataclass
class _Outcome:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"


@dataclass(frozen=True)
class _Shape:
    """How one route's answers look: the objects, and where the text goes in a choice."""

    prefix: str  # of the response id
    object: str
    chunk_object: str
    whole: Callable[[str], dict[str, Any]]  # the text of a complete answer
    piece: Callable[[str], dict[str, Any]]  # the text of one chunk
    opening: dict[str, Any] | None  # the first chunk's part, if any
    closing: dict[str, Any]  # the part of the chunk that carries the finish reason


CHAT = _Shape(
    "chatcmpl",
    "chat.completion",
    "chat.completion.chunk",
    whole=lambda text: {"message": {"role": "assistant", "content": text}},
    piece=lambda text: {"delta": {"content": text}},
    opening={"delta": {"role": "assistant", "content": ""}},
    closing={"delta": {}},
)
COMPLETION = _Shape(
    "cmpl",
    "text_completion",
    "text_completion",
    whole=lambda text: {"text": text},
    piece=lambda text: {"text": text},
    opening=None,
    closing={"text": ""},
)


def _usage(outcome: _Outcome) -> dict[str, int]:
    p, c = outcome.prompt_tokens, outcome.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _sse(chunks: Iterator[dict[str, Any]]) -> StreamingResponse:
    def body() -> Iterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _chat_messages(body: ChatBody) -> list[dict[str, Any]]:
    messages = []
    for i, message in enumerate(body.messages):
        if not isinstance(message.get("role"), str):
            raise invalid(f"messages[{i}] needs a string role", "messages")
        messages.append({**message, "content": message_text(message.get("content"))})
    return messages


def _completion_prompt(body: CompletionBody) -> str:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise invalid("only one prompt per request is supported", "prompt")
        prompt = prompt[0]
    return prompt


class _Worker:
    """What the routes share: the backend, its model's name and the one-at-a-time lock."""

    def __init__(self, backend: Backend, model_name: str) -> None:
        self.backend = backend
        self.model_name = model_name
        self.lock = threading.Lock()

    def params_of(self, body: _Body, prompt_tokens: int, param: str) -> GenerationParams:
        if body.n not in (None, 1):
            raise invalid("only n=1 is supported by this engine", "n")
        context = self.backend.context_length()
        if context is not None and prompt_tokens >= context:
            raise invalid(
                f"the prompt has {prompt_tokens} tokens; this model holds at most {context}",
                param,
                "context_length_exceeded",
            )
        room = DEFAULT_MAX_TOKENS if context is None else context - prompt_tokens
        asked = body.max_completion_tokens if body.max_completion_tokens is not None else None
        asked = asked if asked is not None else body.max_tokens
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return GenerationParams(
            max_tokens=min(room, DEFAULT_MAX_TOKENS) if asked is None else min(asked, room),
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k or 0,
            seed=body.seed,
            stop=tuple(s for s in stops if s),
            min_p=body.min_p or 0.0,
            repetition_penalty=body.repetition_penalty or 1.0,
        )

    def run(self, prompt: str, params: GenerationParams, outcome: _Outcome) -> Iterator[str]:
        """Text pieces after stop sequences, counting tokens and the finish reason."""
        if params.max_tokens == 0:
            outcome.finish_reason = "length"
            return
        scanner = StopScanner(params.stop)
        with self.lock:
            pieces = self.backend.generate(prompt, params)
            try:
                for piece in pieces:
                    outcome.completion_tokens += piece.tokens
                    if piece.finish_reason:
                        outcome.finish_reason = piece.finish_reason
                    text = scanner.feed(piece.text)
                    if text:
                        yield text
                    if scanner.stopped:
                        outcome.finish_reason = "stop"
                        break
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
        rest = scanner.flush()
        if rest:
            yield rest

    def response_base(self, prefix: str) -> dict[str, Any]:
        """The fields every response and chunk of one request repeats."""
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": None,
        }

    def answer(self, body: _Body, prompt: str, param: str, shape: _Shape) -> Any:
        """Generate for ``prompt``: one JSON response, or SSE chunks with ``stream``."""
        outcome = _Outcome(prompt_tokens=self.backend.count_tokens(prompt))
        params = self.params_of(body, outcome.prompt_tokens, param)
        base = self.response_base(shape.prefix)
        if not body.stream:
            text = "".join(self.run(prompt, params, outcome))
            entry = {
                "index": 0,
                **shape.whole(text),
                "logprobs": None,
                "finish_reason": outcome.finish_reason,
            }
            return {**base, "object": shape.object, "choices": [entry], "usage": _usage(outcome)}
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunks() -> Iterator[dict[str, Any]]:
            head = {**base, "object": shape.chunk_object}

            def choice(part: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                entry = {"index": 0, **part, "logprobs": None, "finish_reason": finish}
                return {**head, "choices": [entry]}

            if shape.opening is not None:
                yield choice(shape.opening)
            for text in self.run(prompt, params, outcome):
                yield choice(shape.piece(text))
            yield choice(shape.closing, outcome.finish_reason)
            if include_usage:
                yield {**head, "choices": [], "usage": _usage(outcome)}

        return _sse(chunks())

    def chat_prompt(self, body: ChatBody) -> str:
        try:
            return self.backend.chat_prompt(_chat_messages(body))
        except APIError:
            raise
        except Exception as exc:  # a template that rejects these roles, a missing template
            raise invalid(f"the model's chat template failed: {exc}", "messages") from exc

    def embeddings(self, body: EmbeddingBody, embed: Callable[..., Any]) -> dict[str, Any]:
        texts = embedding_texts(body.input)
        with self.lock:
            vectors, tokens = embed(texts)
        if body.dimensions is not None and body.dimensions != len(vectors[0]):
            raise invalid(
                f"this model's embeddings have {len(vectors[0])} dimensions; "
                f"it cannot return {body.dimensions}",
                "dimensions",
            )
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_vector(v, body.encoding_format),
            }
            for i, v in enumerate(vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        message = f"{loc or 'body'}: {first.get('msg', 'invalid request')}"
        return invalid(message, loc or None).response()

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return APIError(500, f"internal error: {exc}").response()


def create_app(backend: Backend, model_name: str, *, title: str = "famous worker") -> FastAPI:
    """OpenAI routes around ``backend``; one generation at a time (one model, one cache)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    worker = _Worker(backend, model_name)
    created = int(time.time())
    _error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": model_name, "object": "model", "created": created, "owned_by": "famous"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatBody) -> Any:
        return worker.answer(body, worker.chat_prompt(body), "messages", CHAT)

    @app.post("/v1/completions")
    def completions(body: CompletionBody) -> Any:
        return worker.answer(body, _completion_prompt(body), "prompt", COMPLETION)

    embed = getattr(backend, "embed", None)
    if embed is not None:

        @app.post("/v1/embeddings")
        def embeddings(body: EmbeddingBody) -> Any:
            return worker.embeddings(body, embed)

    return app


def serve_worker(backend: Backend, name: str, args: argparse.Namespace, title: str, on: str) -> int:
    """Announce ``name`` on stderr (``title: name on device``), then serve it until stopped."""
    print(f"{title}: {name} on {on}", file=sys.stderr, flush=True)
    serve(create_app(backend, name, title=title), args.host, args.port, args.log_level)
    return 0


def worker_parser(prog: str, description: str, model_help: str) -> argparse.ArgumentParser:
    """A worker's command line with the flags every famous worker takes (those
    ``RuntimeAdapter.worker_argv`` passes, and ``--log-level``); the worker adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--served-model-name", default=None, help="name in /v1/models (default: the model's)"
    )
    parser.add_argument("--log-level", default="warning")
    return parser


def serve(app: FastAPI, host: str, port: int, log_level: str = "warning") -> None:
    """Run ``app`` with uvicorn until SIGTERM / SIGINT (uvicorn shuts down cleanly)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
