"""OpenAI's Responses API (``POST /v1/responses``) as one OpenAI chat request and back.

A request becomes a chat body: ``instructions`` the system message, ``input`` (a string or
items: messages with ``input_text``/``input_image`` parts, ``function_call`` and
``function_call_output`` turns) the messages after the stored conversation of
``previous_response_id``; flat function tools become chat's nested ones, ``text.format``
``response_format``, ``max_output_tokens`` ``max_tokens``. The chat answer becomes a
Response object (``message`` and ``function_call`` output items, ``usage`` renamed); a chat
stream becomes the Responses stream (``ResponseStream``), one event per chat chunk as it
comes; a stored conversation is listed a page at a time (``input_items``). Everything here
is pure: the routes (``famous.serve.routes.responses``) do the I/O.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from famous.serve import sse
from famous.serve.errors import APIError, invalid

MAX_METADATA_KEYS = 16
DEFAULT_PAGE, MAX_PAGE = 20, 100  # input items listed per page: OpenAI's default and bound
_ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text")
_TOOL_CHOICES = ("auto", "none", "required")
# a chat field a gateway error names -> the Responses field the client sent (a message's
# index is not the item's: instructions and history come before the input)
_FIELD_NAMES = [
    (re.compile(r"^messages\b.*"), "input"),
    (re.compile(r"^max_(completion_)?tokens$"), "max_output_tokens"),
    (re.compile(r"^response_format(\.json_schema)?"), "text.format"),
    (re.compile(r"^(tools\[\d+\])\.function"), r"\1"),
    (re.compile(r"^tool_choice\.function"), "tool_choice"),
]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class Turn:
    """A checked Responses request: what the chat body is made from and what the answer
    echoes back."""

    model: str
    items: list[dict[str, Any]]
    chat: dict[str, Any]
    echo: dict[str, Any]
    instructions: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where} must be a string", where)
    return value


def _part(part: Any, where: str) -> dict[str, Any]:
    """A content part as chat has it: a text part or an image_url part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": _text(part.get("text"), f"{where}.text")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise invalid(
                f"{where}.image_url must be a data: or http(s) URL (file ids are not served)",
                f"{where}.image_url",
            )
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "refusal":
        return {"type": "text", "text": _text(part.get("refusal"), f"{where}.refusal")}
    raise invalid(
        f"{where}.type must be input_text, input_image or output_text, got {kind!r}",
        f"{where}.type",
    )


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content for chat: a string, or parts (one string when all are text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise invalid(f"{where} must be a string or a non-empty list of parts", where)
    parts = [_part(part, f"{where}[{j}]") for j, part in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"{where}.role must be user, assistant, system or developer", f"{where}.role")
    return {"role": _ROLES[role], "content": _content(item.get("content"), f"{where}.content")}


def _output_text(value: Any, where: str) -> str:
    """A function call's output: a string, or text parts joined."""
    if isinstance(value, list):
        return "\n".join(
            p["text"]
            for p in (_part(v, f"{where}[{j}]") for j, v in enumerate(value))
            if p["type"] == "text"
        )
    return _text(value, where)


def _chat_turn(item: Any, where: str) -> dict[str, Any]:
    """One input item as a chat message (a function call as an assistant's tool call)."""
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object (an input item)", where)
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        call = {
            "id": _text(item.get("call_id"), f"{where}.call_id"),
            "type": "function",
            "function": {
                "name": _text(item.get("name"), f"{where}.name"),
                "arguments": _text(item.get("arguments"), f"{where}.arguments"),
            },
        }
        # "" rather than null: llama_cpp.server's schema takes only a string here
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    if kind == "function_call_output":
        return {
            "role": "tool",
            "tool_call_id": _text(item.get("call_id"), f"{where}.call_id"),
            "content": _output_text(item.get("output"), f"{where}.output"),
        }
    raise invalid(
        f"{where}.type must be message, function_call or function_call_output, got {kind!r}",
        f"{where}.type",
    )


def messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """The chat messages of a conversation's items; consecutive function calls become one
    assistant message with several tool calls, as chat templates expect."""
    chat: list[dict[str, Any]] = (
        [{"role": "system", "content": instructions}] if instructions else []
    )
    for i, item in enumerate(items):
        message = _chat_turn(item, f"input[{i}]")
        last = chat[-1] if chat else None
        if message.get("tool_calls") and last and last.get("tool_calls"):
            last["tool_calls"].extend(message["tool_calls"])
        else:
            chat.append(message)
    return chat


def _input_items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        ]
    if not isinstance(value, list):
        raise invalid("input is required: a string or a list of input items", "input")
    messages(value, None)  # every item checked, its field named
    return value


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tools as sent (echoed) and as chat has them."""
    if not isinstance(value, list):
        raise invalid("tools must be a list of function tools", "tools")
    chat = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise invalid(
                f"{where}.type must be function (the tools famous serves)", f"{where}.type"
            )
        function: dict[str, Any] = {"name": _text(tool.get("name"), f"{where}.name")}
        for key, kind in (("description", str), ("parameters", dict), ("strict", bool)):
            if tool.get(key) is not None:
                if not isinstance(tool[key], kind):
                    raise invalid(f"{where}.{key} must be a {kind.__name__}", f"{where}.{key}")
                function[key] = tool[key]
        chat.append({"type": "function", "function": function})
    return value, chat


def _tool_choice(value: Any) -> str | dict[str, Any]:
    if value in _TOOL_CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {
            "type": "function",
            "function": {"name": _text(value.get("name"), "tool_choice.name")},
        }
    raise invalid(
        "tool_choice must be auto, none, required or {type: function, name}", "tool_choice"
    )


def _text_format(value: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``text`` as echoed, and the chat ``response_format`` it asks for (None: plain text)."""
    if not isinstance(value, dict):
        raise invalid("text must be an object: {format: {...}}", "text")
    form = value.get("format") or {"type": "text"}
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "text":
        return {"format": form}, None
    if kind == "json_object":
        return {"format": form}, {"type": "json_object"}
    if kind != "json_schema":
        raise invalid(
            "text.format.type must be text, json_schema or json_object", "text.format.type"
        )
    schema = form.get("schema")
    if not isinstance(schema, dict):
        raise invalid("text.format.schema must be a JSON schema object", "text.format.schema")
    spec = {"name": _text(form.get("name"), "text.format.name"), "schema": schema}
    if form.get("strict") is not None:
        spec["strict"] = bool(form["strict"])
    return {"format": form}, {"type": "json_schema", "json_schema": spec}


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise invalid(f"metadata must be an object of at most {MAX_METADATA_KEYS} keys", "metadata")
    for key, text in value.items():
        if len(key) > 64 or not isinstance(text, str) or len(text) > 512:
            raise invalid(
                "metadata maps keys of 64 characters to strings of 512 at most", "metadata"
            )
    return value


def _sampling(payload: dict[str, Any]) -> dict[str, Any]:
    chat: dict[str, Any] = {}
    for key in ("temperature", "top_p"):
        value = payload.get(key)
        if value is not None and not _is_number(value):
            raise invalid(f"{key} must be a number", key)
        if value is not None:
            chat[key] = value
    limit = payload.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise invalid("max_output_tokens must be an integer >= 1", "max_output_tokens")
        chat["max_tokens"] = limit
    return chat


def _flag(payload: dict[str, Any], key: str, default: bool) -> bool:
    value = payload.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false", key)
    return value


def parse(payload: dict[str, Any]) -> Turn:
    """The request checked (a 400 names the field) and translated."""
    model = _text(payload.get("model"), "model")
    if payload.get("background"):
        raise invalid("background responses are not served: send background false", "background")
    instructions = payload.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions must be a string", "instructions")
    previous = payload.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not 0 < len(previous) <= 256):
        raise invalid(
            "previous_response_id must be the id of a stored response", "previous_response_id"
        )
    chat = _sampling(payload)
    echo: dict[str, Any] = {
        "tools": [],
        "tool_choice": "auto",
        "text": {"format": {"type": "text"}},
    }
    if payload.get("tools") is not None:
        echo["tools"], chat["tools"] = _tools(payload["tools"])
    if payload.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(payload["tool_choice"])
        echo["tool_choice"] = payload["tool_choice"]
    if payload.get("text") is not None:
        echo["text"], response_format = _text_format(payload["text"])
        if response_format is not None:
            chat["response_format"] = response_format
    echo |= {
        "metadata": _metadata(payload.get("metadata")) or {},
        "parallel_tool_calls": _flag(payload, "parallel_tool_calls", True),
        "temperature": chat.get("temperature"),
        "top_p": chat.get("top_p"),
        "max_output_tokens": chat.get("max_tokens"),
    }
    return Turn(
        model=model,
        items=_input_items(payload.get("input")),
        chat=chat,
        echo=echo,
        instructions=instructions,
        stream=_flag(payload, "stream", False),
        store=_flag(payload, "store", True),
        previous_response_id=previous,
    )


def chat_body(turn: Turn, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request of this turn after the conversation ``history`` (input items)."""
    chat = messages(history + turn.items, turn.instructions)
    if not chat:
        raise invalid("input is empty: send at least one message", "input")
    body = {"model": turn.model, "messages": chat, **turn.chat}
    if turn.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def renamed(error: APIError) -> APIError:
    """A gateway error about the chat body, naming the Responses field the client sent."""
    for chat_name, name in _FIELD_NAMES:
        if error.param and chat_name.match(error.param):
            old = error.param
            error.param = chat_name.sub(name, old, count=1)
            if not old.startswith("messages"):
                error.message = error.message.replace(old, error.param)
    return error


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat's usage in the Responses shape."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def text_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    content = [part] if status != "in_progress" else []
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response(
    turn: Turn,
    output: list[dict[str, Any]],
    status: str,
    usage_: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object of ``turn`` (``status``: in_progress, completed, incomplete or
    failed)."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": turn.id,
        "object": "response",
        "created_at": turn.created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": turn.instructions,
        "model": turn.model,
        "output": output,
        "previous_response_id": turn.previous_response_id,
        "store": turn.store,
        "truncation": "disabled",
        "usage": usage_,
        **turn.echo,
    }


def answered(turn: Turn, completion: dict[str, Any]) -> dict[str, Any]:
    """The Response object of a whole chat completion."""
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise APIError(502, "the engine's chat answer has no choice", code="engine_error") from None
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    output = []
    if message.get("content"):
        output.append(text_item(new_id("msg"), message["content"], status))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                function.get("name", ""),
                function.get("arguments", ""),
                "completed",
            )
        )
    return response(turn, output, status, usage(completion.get("usage")))


def _stored_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as it is kept and listed (``GET …/input_items``): typed, with an id, a
    message's content as parts (what the chat translation reads back unchanged)."""
    kind = item.get("type", "message")
    kept = {**item, "type": kind}
    kept.setdefault("id", new_id(_ITEM_PREFIXES.get(kind, "item")))
    if kind == "message":
        kept.setdefault("status", "completed")
        if isinstance(kept.get("content"), str):
            part = "output_text" if kept.get("role") == "assistant" else "input_text"
            kept["content"] = [{"type": part, "text": kept["content"]}]
    return kept


def conversation(
    history: list[dict[str, Any]], turn: Turn, answer: dict[str, Any]
) -> list[dict[str, Any]]:
    """What a follow-up continues from: earlier turns, this input, this output."""
    return history + [_stored_item(item) for item in turn.items] + answer["output"]


def page_query(query: Mapping[str, str]) -> tuple[int, bool, str | None]:
    """``limit``, ``order`` (True: newest first) and ``after`` of an item listing, checked
    (a 400 names the parameter; other parameters, like ``include``, change nothing)."""
    text = query.get("limit", str(DEFAULT_PAGE))
    if not re.fullmatch(r"[0-9]{1,3}", text) or not 1 <= int(text) <= MAX_PAGE:
        raise invalid(f"limit must be an integer from 1 to {MAX_PAGE}, got {text[:32]!r}", "limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(f"order must be asc or desc, got {order[:32]!r}", "order")
    return int(text), order == "desc", query.get("after")


def input_items(
    answer: dict[str, Any],
    kept: list[dict[str, Any]],
    query: Mapping[str, str],
) -> dict[str, Any]:
    """A page of what the model was given for ``answer`` (the stored conversation ``kept``
    without its output: earlier turns and this input), in OpenAI's list shape."""
    limit, newest_first, after = page_query(query)
    items = kept[: len(kept) - len(answer.get("output") or [])]
    if newest_first:
        items.reverse()
    start = 0
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise invalid(f"after must be the id of an input item of {answer['id']}", "after")
        start = ids.index(after) + 1
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0].get("id") if data else None,
        "last_id": data[-1].get("id") if data else None,
        "has_more": start + limit < len(items),
    }


@dataclass
class _Open:
    """An output item being streamed."""

    index: int
    item: dict[str, Any]
    text: str = ""


class ResponseStream:
    """A chat completion stream, chunk by chunk, as the Responses API's events."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.message: _Open | None = None
        self.calls: dict[int, _Open] = {}
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None
        self.broken = False

    def _event(self, kind: str, **data: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return sse.event(body, kind)

    def opening(self) -> bytes:
        state = response(self.turn, [], "in_progress")
        return self._event("response.created", response=state) + self._event(
            "response.in_progress", response=state
        )

    def feed(self, chunk: dict[str, Any] | None) -> bytes:
        """The events of one chat chunk (``famous.serve.sse.chunks``; None for ``[DONE]``)."""
        if chunk is None or self.broken:
            return b""
        if isinstance(chunk.get("error"), dict):
            return self.failed(chunk["error"])
        if chunk.get("usage"):
            self.usage = usage(chunk["usage"])
        events = b""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._call(call)
            self.finish = choice.get("finish_reason") or self.finish
        return events

    def _add(self, item: dict[str, Any]) -> tuple[_Open, bytes]:
        opened = _Open(len(self.output), item)
        self.output.append(item)
        return opened, self._event(
            "response.output_item.added", output_index=opened.index, item=item
        )

    def _text(self, delta: str) -> bytes:
        events = b""
        if self.message is None:
            self.message, events = self._add(text_item(new_id("msg"), "", "in_progress"))
            events += self._event(
                "response.content_part.added",
                **self._where(self.message),
                part={"type": "output_text", "text": "", "annotations": []},
            )
        self.message.text += delta
        where = self._where(self.message)
        return events + self._event("response.output_text.delta", **where, delta=delta, logprobs=[])

    def _call(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", 0)
        function = call.get("function") or {}
        events = b""
        if index not in self.calls:
            item = call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                function.get("name") or "",
                "",
                "in_progress",
            )
            self.calls[index], events = self._add(item)
        opened = self.calls[index]
        if function.get("arguments"):
            opened.text += function["arguments"]
            events += self._event(
                "response.function_call_arguments.delta",
                item_id=opened.item["id"],
                output_index=opened.index,
                delta=function["arguments"],
            )
        return events

    @staticmethod
    def _where(opened: _Open) -> dict[str, Any]:
        return {"item_id": opened.item["id"], "output_index": opened.index, "content_index": 0}

    def _close_message(self, status: str) -> bytes:
        opened = self.message
        if opened is None:
            return b""
        done = text_item(opened.item["id"], opened.text, status)
        self.output[opened.index] = done
        where = self._where(opened)
        return (
            self._event("response.output_text.done", **where, text=opened.text, logprobs=[])
            + self._event("response.content_part.done", **where, part=done["content"][0])
            + self._event("response.output_item.done", output_index=opened.index, item=done)
        )

    def _close_call(self, opened: _Open) -> bytes:
        item = opened.item
        done = call_item(item["id"], item["call_id"], item["name"], opened.text, "completed")
        self.output[opened.index] = done
        return self._event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=opened.index,
            name=item["name"],
            arguments=opened.text,
        ) + self._event("response.output_item.done", output_index=opened.index, item=done)

    def closing(self) -> bytes:
        """What ends the stream: every open item done, then the whole response."""
        status = "incomplete" if self.finish == "length" else "completed"
        events = self._close_message(status)
        for opened in self.calls.values():
            events += self._close_call(opened)
        self.final = response(self.turn, self.output, status, self.usage)
        return events + self._event(f"response.{status}", response=self.final)

    def failed(self, error: dict[str, Any]) -> bytes:
        """An error the chat stream ended with: OpenAI's error event, then the failed
        response (nothing is stored)."""
        code = str(error.get("code") or "engine_error")
        message = str(error.get("message") or "the answer broke off")
        failed = response(
            self.turn, self.output, "failed", self.usage, {"code": code, "message": message}
        )
        self.broken = True
        return self._event(
            "error", code=code, message=message, param=error.get("param")
        ) + self._event("response.failed", response=failed)
