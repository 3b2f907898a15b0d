"""The gateway's published contract (``GET /openapi.json``): what each route accepts.

The routes read raw bodies (unknown fields are dropped, not refused, and validation errors
must be OpenAI-shaped), so FastAPI cannot infer their bodies; these models describe them
for clients, code generators and schemathesis. Their bounds are the very tables the
gateway checks with (``famous.serve.fields``), so the document cannot drift from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from famous.serve.fields import EXTENSION_RANGES, OPENAI_RANGES
from famous.serve.request_checks import MAX_RERANK_DOCUMENTS

_REF = "#/components/schemas/{model}"
_Name = Field(min_length=1, max_length=256, description="a name from GET /v1/models")


def _bounded(ranges: dict[str, tuple[float, float, bool]]) -> dict[str, Any]:
    return {
        key: (int | None if integer else float | None, Field(None, ge=low, le=high))
        for key, (low, high, integer) in ranges.items()
    }


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: str = Field(description="system, user, assistant or tool")
    content: str | list[dict[str, Any]] | None = Field(
        None,
        description="a string, or parts: {type: text, text} and {type: image_url, image_url: "
        "{url}} with a data URI (PNG, JPEG, WebP, GIF) or an http(s) URL the gateway fetches; "
        "images need a model with a vision projector on llama-server",
    )
    tool_call_id: str | None = Field(None, description="required when role is tool")
    name: str | None = None


_Sampling = create_model(  # type: ignore[call-overload]
    "Sampling",
    __base__=_Open,
    model=(str, _Name),
    stream=(bool | None, None),
    seed=(int | None, None),
    stop=(str | list[str] | None, None),
    n=(int | None, Field(None, ge=1, le=128)),
    logit_bias=(dict[str, float] | None, None),
    **_bounded(OPENAI_RANGES | EXTENSION_RANGES),
)


class ChatCompletionRequest(_Sampling):  # type: ignore[misc, valid-type]
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):  # type: ignore[misc, valid-type]
    prompt: str | list[str] | list[int] = Field(description="text, texts or token ids")
    max_tokens: int | None = Field(None, ge=0)
    suffix: str | None = None
    echo: bool | None = None


class EmbeddingRequest(_Open):
    model: str = _Name
    input: str | list[str] = Field(description="a text or a non-empty list of texts")
    encoding_format: str | None = None
    dimensions: int | None = Field(None, ge=1)


class RerankDocument(_Open):
    text: str


class RerankRequest(_Open):
    """Cohere's and Jina's rerank request, which llama.cpp's llama-server serves."""

    model: str = _Name
    query: str = Field(min_length=1, description="the text to rank the documents against")
    documents: list[str | RerankDocument] = Field(
        min_length=1, max_length=MAX_RERANK_DOCUMENTS, description="texts, or {text} objects"
    )
    top_n: int | None = Field(
        None, ge=1, description="answer the best n (all when n is at least their number)"
    )
    return_documents: bool | None = Field(None, description="each result carries its text")


class AnthropicMessage(_Open):
    role: str = Field(description="user or assistant")
    content: str | list[dict[str, Any]] = Field(
        description="a string, or blocks: {type: text, text}, {type: image, source: {type: "
        "base64, media_type, data}}, {type: tool_use, id, name, input} (assistant), "
        "{type: tool_result, tool_use_id, content, is_error} (user)"
    )


class AnthropicTool(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]


class CountTokensRequest(_Open):
    """Anthropic's count_tokens request: a Messages request without max_tokens."""

    model: str = _Name
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = Field(None, description="a string or text blocks")
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = Field(
        None, description="{type: auto | any | none} or {type: tool, name}"
    )


class MessagesRequest(CountTokensRequest):
    """Anthropic's Messages request (``POST /v1/messages``)."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stream: bool | None = None
    metadata: dict[str, Any] | None = Field(None, description="{user_id}")


class ResponsesRequest(_Open):
    """OpenAI's Responses API, answered through the chat route."""

    model: str = _Name
    input: str | list[dict[str, Any]] = Field(
        description="a text, or items: {type: message, role, content: a string or parts "
        "input_text {text} / input_image {image_url}}, {type: function_call, call_id, name, "
        "arguments}, {type: function_call_output, call_id, output}"
    )
    instructions: str | None = Field(None, description="the system message of this turn")
    tools: list[dict[str, Any]] | None = Field(
        None, description="function tools: {type: function, name, description, parameters}"
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description="auto, none, required or {type: function, name}"
    )
    text: dict[str, Any] | None = Field(
        None, description="{format: {type: text | json_object | json_schema, name, schema, strict}}"
    )
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool | None = None
    store: bool | None = Field(None, description="keep it for previous_response_id (default)")
    previous_response_id: str | None = Field(
        None, max_length=256, description="continue that stored response's conversation"
    )
    metadata: dict[str, str] | None = Field(None, max_length=16)


class RegisterModelRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256, description="its name in the API")
    path: str = Field(min_length=1, max_length=256, description="a GGUF file or model folder")
    runtime: str | None = Field(None, description="llamacpp unless the file says otherwise")
    engine: str | None = Field(None, max_length=64)
    embedding: bool | None = None
    configuration: dict[str, Any] | None = Field(
        None, description="the runtime's request-settable options only"
    )


class LoadRequest(BaseModel):
    model: str = _Name


class StopRequest(BaseModel):
    model: str | None = Field(None, min_length=1, max_length=256)
    all: bool | None = None


class PinRequest(BaseModel):
    """``PUT /famous/api/catalog/{model}/pin``: the engine famous uses for the model."""

    engine: str = Field(min_length=1, max_length=64, description="an engine of the package")
    force: bool = Field(False, description="pin it even where it cannot run")


class PullRequest(BaseModel):
    """``POST /famous/api/pulls``: a background pull, polled at ``/famous/api/pulls/{id}``."""

    model: str = Field(
        min_length=1, max_length=256, description="a package name or ORG/NAME[:QUANT]"
    )
    engine: str | None = Field(None, max_length=64, description="this engine, not the best")
    variant: str | None = Field(None, max_length=64, description="Q4_K_M, bf16…")


_OllamaName = Field(min_length=1, max_length=256, description="a name from GET /api/tags")
_KeepAlive = Field(None, description="seconds or a duration ('5m'); negative: stay loaded")


class OllamaModelRequest(_Open):
    """Ollama's show, pull and delete: one model's name."""

    model: str = _OllamaName
    stream: bool | None = Field(None, description="pull: progress as NDJSON (default true)")


class _OllamaGeneration(_Open):
    model: str = _OllamaName
    stream: bool | None = Field(None, description="NDJSON, one object per piece (default true)")
    format: str | dict[str, Any] | None = Field(None, description="'json' or a JSON schema")
    options: dict[str, Any] | None = Field(
        None, description="num_predict, temperature, top_p, top_k, seed, stop, repeat_penalty…"
    )
    keep_alive: float | str | None = _KeepAlive


class OllamaChatMessage(_Open):
    role: str
    content: str | None = None
    images: list[str] | None = Field(None, description="base64 PNG, JPEG, WebP or GIF")
    tool_calls: list[dict[str, Any]] | None = None


class OllamaChatRequest(_OllamaGeneration):
    messages: list[OllamaChatMessage] | None = None
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(_OllamaGeneration):
    prompt: str | None = None
    system: str | None = None
    raw: bool | None = Field(None, description="the prompt as is, without the chat template")
    images: list[str] | None = None


class OllamaEmbedRequest(_Open):
    model: str = _OllamaName
    input: str | list[str]
    dimensions: int | None = Field(None, ge=1)
    keep_alive: float | str | None = _KeepAlive


class OllamaEmbeddingsRequest(_Open):
    model: str = _OllamaName
    prompt: str
    keep_alive: float | str | None = _KeepAlive


class OllamaCopyRequest(BaseModel):
    source: str = _OllamaName
    destination: str = Field(min_length=1, max_length=256, description="the alias")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str = Field(description="invalid_request_error, authentication_error, ...")
    message: str


class AnthropicErrorResponse(BaseModel):
    """The errors of Anthropic's routes (``/v1/messages``), in Anthropic's shape."""

    type: str = Field(description="error")
    error: AnthropicErrorDetail


_MODELS: list[type[BaseModel]] = [
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    MessagesRequest,
    CountTokensRequest,
    ResponsesRequest,
    RegisterModelRequest,
    LoadRequest,
    StopRequest,
    PinRequest,
    PullRequest,
    OllamaModelRequest,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaEmbedRequest,
    OllamaEmbeddingsRequest,
    OllamaCopyRequest,
    ErrorResponse,
    AnthropicErrorResponse,
]
_ERRORS = {
    400: "a field is missing or out of range (error.param names it)",
    401: "a credential is required",
    403: "a foreign Host or Origin",
    404: "no such model or route",
    408: "the client was too slow to send its request",
    409: "in conflict with what runs (a running model, a pull, an incompatible engine)",
    413: "the body is over the limit",
    415: "the body is not application/json",
    503: "the model is loading (Retry-After) or the gateway is shutting down",
}


def components() -> dict[str, Any]:
    """The request and error models, as OpenAPI component schemas."""
    _, schema = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    return schema["$defs"]


def _error_responses(model: str = "ErrorResponse") -> dict[int | str, dict[str, Any]]:
    error = {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}
    return {status: {"description": why, "content": error} for status, why in _ERRORS.items()}


def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter, for ``route(query=[...])`` (the routes read their query
    themselves, so that a bad value is a 400 naming it)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def route(
    body: type[BaseModel] | None = None,
    *,
    streams: bool = False,
    admin: bool = False,
    media_type: str = "application/json",
    anthropic: bool = False,
    query: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: its documented body, query, credential and
    answers (inference routes need the API key only when the gateway has one;
    ``anthropic``: a route of Anthropic's API, its errors in that shape and its key in
    ``x-api-key`` too)."""
    ok: dict[str, Any] = {media_type: {}}
    if streams:
        ok["text/event-stream"] = {}
    extra: dict[str, Any] = {"responses": {"200": {"description": "OK", "content": ok}}}
    extra["security"] = [{"bearer": []}] if admin else [{"bearer": []}, {}]
    if anthropic:
        extra["security"].insert(1, {"x-api-key": []})
    if body is not None:
        schema = {"$ref": _REF.format(model=body.__name__)}
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    if query:
        extra["parameters"] = query
    errors = _error_responses("AnthropicErrorResponse" if anthropic else "ErrorResponse")
    return {"openapi_extra": extra, "responses": errors}
