"""Ollama's API onto the gateway's OpenAI one: pure translations, no I/O.

Requests (``/api/chat``, ``/api/generate``, ``/api/embed``) become OpenAI bodies that
``famous.serve.routes.openai.answer`` answers; its server-sent events become Ollama's
NDJSON objects one by one (``ChatStream``). Errors are Ollama's ``{"error": "..."}``, the
message naming the field. Options that only a model's load can change (``num_ctx``) are
refused: the engine's configuration is the user's, not a request's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from famous.serve import sse
from famous.serve.errors import APIError, invalid
from famous.serve.images import sniff

# Ollama option -> OpenAI field (the gateway forwards the extensions to llama.cpp)
_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "min_p": "min_p",
    "typical_p": "typical_p",
}
#: set when the engine starts; a request cannot change them without restarting it
_LOAD_OPTIONS = frozenset({"num_ctx"})
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}


def error_body(exc: APIError) -> dict[str, str]:
    """Ollama's error shape; the field goes into the message (Ollama's has no ``param``)."""
    message = exc.message
    if exc.param and exc.param not in message:
        message = f"{exc.param}: {message}"
    return {"error": message}


def model_name(value: Any, field: str = "model") -> str:
    """An Ollama name as famous knows it: ``smollm2:latest`` is ``smollm2``."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{field} is required: a model name from GET /api/tags", field)
    return value[: -len(":latest")] if value.endswith(":latest") else value


def ollama_name(name: str) -> str:
    """famous's name as Ollama lists it (with a tag)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's ``keep_alive`` (seconds, or a Go duration such as ``"5m"``, ``"1h30m"``) in
    seconds; negative keeps the model loaded; None when the request sets none."""
    if value is None:
        return None
    seconds = None
    with contextlib.suppress(ValueError, OverflowError):
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (parts := _DURATION.findall(value.strip())):
            if "".join(n + u for n, u in parts) == value.strip():
                seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        elif isinstance(value, str):
            seconds = float(value.strip())
    if seconds is not None and math.isfinite(seconds):
        return seconds
    raise invalid(
        f"keep_alive must be seconds or a duration like '5m', got {value!r}", "keep_alive"
    )


def _options(payload: dict[str, Any]) -> dict[str, Any]:
    options = payload.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise invalid("options must be an object", "options")
    for key in _LOAD_OPTIONS & options.keys():
        if options[key] is not None:
            raise invalid(
                f"options.{key} is set when the model's engine starts, not per request: set "
                "the engine's ctx-size (famous set, or --model configuration) instead",
                f"options.{key}",
            )
    body = {_OPTIONS[k]: v for k, v in options.items() if k in _OPTIONS and v is not None}
    predict = options.get("num_predict")
    if predict is not None:
        if not isinstance(predict, int) or isinstance(predict, bool) or predict in (0,):
            raise invalid("options.num_predict must be an integer >= 1 (or -1)", "options")
        if predict > 0:
            body["max_tokens"] = predict
    return body


def _format(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": value}}
    raise invalid("format must be 'json' or a JSON schema object", "format")


def _image_part(image: Any, where: str) -> dict[str, Any]:
    if not isinstance(image, str):
        raise invalid(f"{where} must be a base64 string", where)
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where} is not base64", where) from None
    media = sniff(data)
    if media is None:
        raise invalid(f"{where} is not a PNG, JPEG, WebP or GIF image", where)
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{image}"}}


def _content(text: Any, images: Any, where: str) -> str | list[dict[str, Any]]:
    if text is not None and not isinstance(text, str):
        raise invalid(f"{where}.content must be a string", f"{where}.content")
    if images is None or images == []:
        return text or ""
    if not isinstance(images, list):
        raise invalid(f"{where}.images must be a list of base64 strings", f"{where}.images")
    parts = [_image_part(img, f"{where}.images[{i}]") for i, img in enumerate(images)]
    return [{"type": "text", "text": text or ""}, *parts]


def _tool_calls(calls: Any, where: str, ids: list[str]) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid(f"{where}.tool_calls[{j}].function needs a name", f"{where}.tool_calls")
        arguments = fn.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise invalid(f"{where}.tool_calls[{j}].function.arguments must be an object", where)
        ids.append(f"call_{len(ids)}")
        out.append(
            {
                "id": ids[-1],
                "type": "function",
                "function": {"name": fn["name"], "arguments": json.dumps(arguments)},
            }
        )
    return out


def _messages(messages: Any) -> list[dict[str, Any]]:
    """Ollama's messages as OpenAI's; a tool answer gets the id of the call it answers (in
    order: Ollama's calls have no ids)."""
    if not isinstance(messages, list):
        raise invalid("messages must be a list of {role, content} objects", "messages")
    out: list[dict[str, Any]] = []
    ids: list[str] = []
    answered = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid(f"{where} must be an object with a string role", "messages")
        role = message["role"]
        entry: dict[str, Any] = {
            "role": role,
            "content": _content(message.get("content"), message.get("images"), where),
        }
        if message.get("tool_calls"):
            entry["tool_calls"] = _tool_calls(message["tool_calls"], where, ids)
        if role == "tool":
            entry["tool_call_id"] = ids[answered] if answered < len(ids) else f"call_{answered}"
            answered += 1
        out.append(entry)
    return out


def _common(payload: dict[str, Any], name: str) -> dict[str, Any]:
    stream = payload.get("stream", True)
    if stream is not None and not isinstance(stream, bool):
        raise invalid(f"stream must be true or false, got {stream!r}", "stream")
    body: dict[str, Any] = {"model": name, **_options(payload)}
    body["stream"] = True  # always streamed from the engine: one translation for both
    body["stream_options"] = {"include_usage": True}
    response_format = _format(payload.get("format"))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/chat`` as an OpenAI chat body."""
    body = _common(payload, model_name(payload.get("model")))
    body["messages"] = _messages(payload.get("messages"))
    tools = payload.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise invalid("tools must be a list of {type: function, function} objects", "tools")
        body["tools"] = [{"type": "function", **t} if isinstance(t, dict) else t for t in tools]
    return body


def generate_request(payload: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/generate`` as an OpenAI chat body (the model's template applies, as in
    Ollama); ``raw`` prompts, which skip the template, as a completions body."""
    body = _common(payload, model_name(payload.get("model")))
    prompt = payload.get("prompt")
    if not isinstance(prompt, str):
        raise invalid("prompt must be a string", "prompt")
    if payload.get("raw"):
        if payload.get("images"):
            raise invalid("a raw prompt cannot carry images", "images")
        body["prompt"] = prompt
        return body
    system = payload.get("system")
    if system is not None and not isinstance(system, str):
        raise invalid("system must be a string", "system")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": _content(prompt, payload.get("images"), "")})
    body["messages"] = messages
    return body


def is_empty(payload: dict[str, Any], kind: str) -> bool:
    """Ollama's load and unload requests: no prompt, no messages."""
    if kind == "chat":
        return payload.get("messages") in (None, [])
    return payload.get("prompt") in (None, "")


def embed_inputs(payload: dict[str, Any], legacy: bool) -> list[str] | str:
    """The texts of ``/api/embed`` (``input``) or of the legacy ``/api/embeddings``
    (``prompt``)."""
    field = "prompt" if legacy else "input"
    value = payload.get(field)
    if isinstance(value, str) and (value or not legacy):
        return value
    if not legacy and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    what = "a string" if legacy else "a string or a non-empty list of strings"
    raise invalid(f"{field} is required: {what}", field)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def expires_at(last_used: float, keep_alive: float) -> str:
    """When an idle model unloads (``last_used`` a ``time.time()``), as Ollama shows it."""
    if keep_alive < 0:
        return (datetime.now(UTC) + timedelta(days=365 * 100)).isoformat()
    return datetime.fromtimestamp(last_used + keep_alive, UTC).isoformat()


class ChatStream:
    """OpenAI chunks in, Ollama objects out, one by one. ``field``: ``message`` for
    ``/api/chat``, ``response`` for ``/api/generate``. Tool calls are whole only at the
    end of the stream (their arguments come in pieces), so they go out with it."""

    def __init__(self, model: str, field: str) -> None:
        self.model = model
        self.field = field
        self.started = time.monotonic_ns()
        self.first: int | None = None
        self.reason = "stop"
        self.usage: dict[str, Any] = {}
        self.calls: dict[int, dict[str, Any]] = {}
        self.finished = False

    def _object(self, text: str, done: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.model, "created_at": _now()}
        if self.field == "message":
            obj["message"] = {"role": "assistant", "content": text}
        else:
            obj["response"] = text
        obj["done"] = done
        return obj

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The Ollama objects one OpenAI chunk (or an error event) becomes."""
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            self.finished = True
            return [{"error": str(message)}]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        out = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            for call in delta.get("tool_calls") or []:
                self._add_call(call)
            if choice.get("finish_reason"):
                self.reason = _FINISH.get(choice["finish_reason"], "stop")
            if text:
                self.first = self.first or time.monotonic_ns()
                out.append(self._object(text))
        return out

    def _add_call(self, call: dict[str, Any]) -> None:
        slot = self.calls.setdefault(int(call.get("index") or 0), {"name": "", "arguments": ""})
        fn = call.get("function") or {}
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""

    def tool_calls(self) -> list[dict[str, Any]]:
        out = []
        for _, call in sorted(self.calls.items()):
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except ValueError:
                arguments = {}
            out.append({"function": {"name": call["name"], "arguments": arguments}})
        return out

    def final(self) -> dict[str, Any]:
        """The closing object: ``done``, why, the counts and durations (ns) Ollama sends."""
        self.finished = True
        end = time.monotonic_ns()
        first = self.first or end
        obj = self._object("", done=True)
        if self.calls and self.field == "message":
            obj["message"]["tool_calls"] = self.tool_calls()
        obj.update(
            done_reason=self.reason,
            total_duration=end - self.started,
            load_duration=0,
            prompt_eval_count=int(self.usage.get("prompt_tokens") or 0),
            prompt_eval_duration=first - self.started,
            eval_count=int(self.usage.get("completion_tokens") or 0),
            eval_duration=end - first,
        )
        return obj


def merged(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A whole answer (``stream: false``): the pieces' text joined into the final object."""
    final = dict(objects[-1])
    pieces = objects[:-1]
    if "message" in final:
        text = "".join(o["message"]["content"] for o in pieces)
        final["message"] = {**final["message"], "content": text}
    else:
        final["response"] = "".join(o["response"] for o in pieces)
    return final


def ndjson(obj: dict[str, Any]) -> bytes:
    return sse.dumps(obj) + b"\n"
