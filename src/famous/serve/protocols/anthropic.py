"""Anthropic's Messages API onto one OpenAI chat request, and the answer back.

A request (``to_openai``) becomes an OpenAI chat body: the system prompt a system message,
text and base64 images content parts, ``tool_use`` blocks the assistant's ``tool_calls``,
``tool_result`` blocks ``tool`` messages, ``tools`` functions, ``tool_choice`` ``any``
OpenAI's ``required``. The engine is always asked for a stream with usage: the answer is
translated chunk by chunk (``Translator``) into Anthropic's events, which a streamed request
gets as they come and a whole one folded into one message (``fold``), so that both answer
the same text. Stop sequences are the gateway's to apply (``StopScanner``): the engine is
not given them, the gateway cuts the text where one begins and ends the engine's answer
there, so that the message can say which sequence stopped it (OpenAI's ``finish_reason:
stop`` cannot tell a stop sequence from the end of the turn).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from famous.serve import tool_calls
from famous.serve.errors import APIError, invalid
from famous.serve.sse import event as sse_event

PATH = "/v1/messages"  # Anthropic's routes: this path and those under it
MAX_STOP_SEQUENCES = 64
MAX_STOP_LENGTH = 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# HTTP status -> Anthropic's error type
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# OpenAI's field names in the gateway's errors -> the Anthropic request's
_FIELDS = {"stop": "stop_sequences", "user": "metadata.user_id"}
_DROPPED_BLOCKS = ("thinking", "redacted_thinking")  # the model's reasoning, not history


# --- errors -------------------------------------------------------------------------------


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_response(exc: APIError) -> JSONResponse:
    """The gateway's error in Anthropic's shape, its message naming the field (in the
    Anthropic request's terms) when the error is about one."""
    message = exc.message
    if exc.param:
        name = _FIELDS.get(exc.param, exc.param)
        message = message.replace(f"{exc.param} ", f"{name} ", 1) if name != exc.param else message
        if name not in message:
            message = f"{name}: {message}"
    return JSONResponse(error_body(exc.status, message), exc.status, headers=exc.headers)


def shaped(path: str, exc: APIError) -> JSONResponse:
    """The error as the route at ``path`` answers errors: Anthropic's shape on its routes,
    OpenAI's elsewhere."""
    if path == PATH or path.startswith(PATH + "/"):
        return error_response(exc)
    return exc.response()


def openai_error(status: int, content: bytes) -> APIError:
    """An OpenAI-shaped error answer of ``famous.serve.routes.openai.answer`` as an
    ``APIError`` again (its message and field)."""
    try:
        error = json.loads(content)["error"]
        return APIError(status, str(error["message"]), param=error.get("param"))
    except (ValueError, KeyError, TypeError):
        return APIError(status, content.decode("utf-8", "replace")[:2000])


def sse(event: dict[str, Any]) -> bytes:
    return sse_event(event, event["type"])


# --- the request --------------------------------------------------------------------------


@dataclass
class Ask:
    """A Messages request as the gateway sends it on: the OpenAI chat body (always a stream
    with usage), the stop sequences the gateway applies, and whether the client streams."""

    body: dict[str, Any]
    stop_sequences: list[str]
    stream: bool
    model: str


def _text(block: dict[str, Any], where: str) -> str:
    if not isinstance(block.get("text"), str):
        raise invalid(f"{where}.text must be a string", where)
    return block["text"]


def _system(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, list):
        raise invalid("system must be a string or a list of text blocks", "system")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{i} must be a block {{type: text, text}}", "system")
        texts.append(_text(block, f"system.{i}"))
    return "\n".join(texts) or None


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.source must be an object", f"{where}.source")
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    if source.get("type") != "base64":
        raise invalid(f"{where}.source.type must be base64 or url", f"{where}.source.type")
    media = source.get("media_type")
    if media not in IMAGE_TYPES:
        what = f"{where}.source.media_type"
        raise invalid(f"{what} must be one of {', '.join(IMAGE_TYPES)}, got {media!r}", what)
    if not isinstance(source.get("data"), str):
        raise invalid(f"{where}.source.data must be a base64 string", f"{where}.source.data")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``tool_result`` block as OpenAI's tool message (its content as text)."""
    if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
        raise invalid(f"{where}.tool_use_id must be the id of a tool_use", f"{where}.tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            inner = f"{where}.content.{k}"
            if not isinstance(part, dict) or part.get("type") != "text":
                raise invalid(f"{inner} must be a text block (tool results here are text)", inner)
            parts.append(_text(part, inner))
        text = "\n".join(parts)
    else:
        raise invalid(f"{where}.content must be a string or text blocks", f"{where}.content")
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise invalid(f"{where} must have a string id and name", where)
    if not isinstance(block.get("input"), dict):
        raise invalid(f"{where}.input must be an object", f"{where}.input")
    function = {"name": block["name"], "arguments": json.dumps(block["input"])}
    return {"id": block["id"], "type": "function", "function": function}


def _blocks(i: int, role: str, blocks: list[Any]) -> list[dict[str, Any]]:
    """One Anthropic message's blocks as OpenAI messages: a user's tool results first (as
    tool messages), then the rest of its turn; an assistant's text with its calls."""
    parts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    allowed = {"user": ("text", "image", "tool_result"), "assistant": ("text", "tool_use")}[role]
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if role == "assistant" and kind in _DROPPED_BLOCKS:
            continue
        if kind not in allowed:
            raise invalid(f"{where}.type must be one of {', '.join(allowed)}, got {kind!r}", where)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind == "tool_result":
            results.append(_tool_result(block, where))
        else:
            calls.append(_tool_use(block, where))
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        return [message | {"tool_calls": calls}] if calls else [message]
    if not parts:
        return results
    if all(p["type"] == "text" for p in parts):
        return [*results, {"role": "user", "content": "".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty list of {role, content}", "messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role must be user or assistant", f"messages.{i}.role")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
        elif isinstance(content, list):
            out.extend(_blocks(i, message["role"], content))
        else:
            what = f"messages.{i}.content"
            raise invalid(f"{what} must be a string or a list of content blocks", what)
    return out


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid("tools must be a list of {name, description, input_schema}", "tools")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            what = f"tools.{i}.type"
            raise invalid(f"{what}: only custom tools {{name, input_schema}} are served", what)
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise invalid(f"tools.{i}.name must be a non-empty string", f"tools.{i}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            what = f"tools.{i}.input_schema"
            raise invalid(f"{what} must be a JSON schema object", what)
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"tools.{i}.description must be a string", f"tools.{i}.description")
        function = {"name": tool["name"], "description": description or "", "parameters": schema}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(value: Any) -> dict[str, Any]:
    """``tool_choice`` as OpenAI's fields (``tool_choice``, ``parallel_tool_calls``)."""
    if value is None:
        return {}
    kind = value.get("type") if isinstance(value, dict) else None
    choices = {"auto": "auto", "any": "required", "none": "none"}
    if kind in choices:
        chosen: Any = choices[kind]
    elif kind == "tool" and isinstance(value.get("name"), str):
        chosen = {"type": "function", "function": {"name": value["name"]}}
    else:
        raise invalid(
            "tool_choice must be {type: auto | any | none} or {type: tool, name}", "tool_choice"
        )
    fields: dict[str, Any] = {"tool_choice": chosen}
    if value.get("disable_parallel_tool_use") is True:
        fields["parallel_tool_calls"] = False
    return fields


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_LENGTH for s in value)
    ):
        raise invalid(
            f"stop_sequences must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings "
            f"of at most {MAX_STOP_LENGTH} characters",
            "stop_sequences",
        )
    return value


def _sampling(payload: dict[str, Any]) -> dict[str, Any]:
    body = {k: payload[k] for k in ("temperature", "top_p", "top_k") if payload.get(k) is not None}
    metadata = payload.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata must be an object {user_id}", "metadata")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise invalid("metadata.user_id must be a string", "metadata.user_id")
        if user:
            body["user"] = user
    return body


def to_openai(payload: dict[str, Any], *, count: bool = False) -> Ask:
    """The Messages request (or, with ``count``, a count_tokens request, which has no
    ``max_tokens``) as the OpenAI chat body the gateway answers; 400 naming the field."""
    model = payload.get("model")
    if not isinstance(model, str):
        raise invalid("model is required: the name of a model from GET /v1/models", "model")
    if not count and payload.get("max_tokens") is None:
        raise invalid("max_tokens is required: the most tokens to generate", "max_tokens")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid(f"stream must be true or false, got {stream!r}", "stream")
    messages = _messages(payload.get("messages"))
    system = _system(payload.get("system"))
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, *messages] if system else messages,
        "max_tokens": 1 if count else payload["max_tokens"],
        **_sampling(payload),
    }
    if payload.get("tools") is not None:
        body["tools"] = _tools(payload["tools"])
    body |= _tool_choice(payload.get("tool_choice"))
    if not count:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    stops = _stop_sequences(payload.get("stop_sequences"))
    return Ask(body, stops, bool(stream), model)


def counting_request(body: dict[str, Any]) -> dict[str, Any]:
    """The one-token request whose ``usage.prompt_tokens`` is the prompt's count: the chat
    body of ``to_openai(count=True)``, with tools that the gateway handles replaced by what
    it sends the engine for them (``famous.serve.tool_calls``: the tools in a system message
    and a JSON schema), which a forced call cut at one token could not answer."""
    plan = tool_calls.tool_plan(body)
    if plan is None or plan.choice == "none":
        return body
    return tool_calls.engine_request(plan, body)


# --- the answer ---------------------------------------------------------------------------


class StopScanner:
    """Finds the first stop sequence in a text that arrives in pieces: what is surely
    before any stop sequence is passed on at once; a tail that may begin one waits."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """The text to pass on now, and the stop sequence found (the text ends before it)."""
        if not self.stops:
            return text, None
        buf = self.held + text
        found = [(buf.find(s), s) for s in self.stops if s in buf]
        if found:
            at, stop = min(found)
            self.held = ""
            return buf[:at], stop
        keep = max((_partial(buf, s) for s in self.stops), default=0)
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _partial(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop``."""
    for k in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0


def tool_use_id(call_id: Any) -> str:
    raw = re.sub(r"[^A-Za-z0-9]", "", str(call_id or "").removeprefix("call_"))
    return f"toolu_{raw or uuid.uuid4().hex[:24]}"


@dataclass
class Translator:
    """OpenAI chat chunks in, Anthropic's stream events out, one chunk at a time."""

    model: str
    stop_sequences: list[str]
    input_tokens: int | None = None
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:24]}")
    done: bool = False  # a stop sequence ended the answer: read no more chunks
    output_tokens: int = 0
    engine_output_tokens: int | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    _index: int = -1
    _open: str | None = None  # "text", or the OpenAI index of the open tool call
    _scanner: StopScanner = field(init=False)

    def __post_init__(self) -> None:
        self._scanner = StopScanner(self.stop_sequences)

    def start(self) -> list[dict[str, Any]]:
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens or 0, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _begin(self, opened: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self._index += 1
        self._open = opened
        started = {"type": "content_block_start", "index": self._index, "content_block": block}
        return [*events, started]

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _text(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        events = [] if self._open == "text" else self._begin("text", {"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        return [*events, {"type": "content_block_delta", "index": self._index, "delta": delta}]

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events = []
        opened = f"tool{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != opened:
            block = {
                "type": "tool_use",
                "id": tool_use_id(call.get("id")),
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._begin(opened, block)
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append({"type": "content_block_delta", "index": self._index, "delta": delta})
        return events

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one OpenAI chunk (after a stop sequence: none)."""
        if self.done:
            return []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                self.input_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                self.engine_output_tokens = usage["completion_tokens"]
        events: list[dict[str, Any]] = []
        for choice in (chunk.get("choices") or [])[:1]:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.output_tokens += 1
                text, stop = self._scanner.feed(delta["content"])
                events += self._text(text)
                if stop is not None:
                    self.done, self.stop_reason, self.stop_sequence = True, "stop_sequence", stop
                    return events
            for call in delta.get("tool_calls") or []:
                events += self._call(call)
            if choice.get("finish_reason"):
                self.stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[dict[str, Any]]:
        """What ends the message: held text, the open block's stop, the stop reason and
        usage; a stop sequence's early end counts the tokens as they came."""
        events = self._text(self._scanner.flush()) + self._close()
        output = self.output_tokens if self.done else self.engine_output_tokens
        usage = {"input_tokens": self.input_tokens or 0, "output_tokens": output or 0}
        if self.done or output is None:
            usage["output_tokens"] = self.output_tokens
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": self.stop_sequence}
        ending = {"type": "message_delta", "delta": delta, "usage": usage}
        return [*events, ending, {"type": "message_stop"}]


def fold(start: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole message the events stream (a tool call's input parsed from its JSON)."""
    message = dict(start["message"])
    blocks: list[dict[str, Any]] = []
    arguments: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                blocks[event["index"]]["text"] += delta["text"]
            else:
                arguments[event["index"]] = (
                    arguments.get(event["index"], "") + delta["partial_json"]
                )
        elif kind == "message_delta":
            message |= event["delta"]
            message["usage"] = event["usage"]
    for index, raw in arguments.items():
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise APIError(502, "the engine's tool call arguments are not a JSON object")
        blocks[index]["input"] = value
    message["content"] = blocks
    return message


def stream_error(data: dict[str, Any]) -> dict[str, Any] | None:
    """An OpenAI error event (an engine that broke, a gateway shutting down) as Anthropic's
    ``error`` event, or None when the chunk is no error."""
    error = data.get("error")
    if not isinstance(error, dict):
        return None
    status = 503 if error.get("code") == "shutting_down" else 502
    return error_body(status, str(error.get("message") or "the engine failed"))
