"""Tool calls on any model whose engine constrains answers to a JSON schema.

Small models' chat templates often know nothing of tools (SmolLM2's does not), and engines
then answer plain text: the model never learns of the tools, the client never gets a call.
The gateway then describes the tools in a system message and asks the engine for an answer
under a schema built from the tools' own parameter schemas: ``{"name": ..., "arguments":
{...}}`` when the client forces a call (``tool_choice`` ``required`` or a named function:
a call is guaranteed, its arguments valid JSON of the right shape), that or ``{"content":
"..."}`` under ``auto`` (the model chooses). It answers in OpenAI's format: a ``tool_calls``
message or a text, or for a stream the deltas OpenAI sends (a call's name once, then its
arguments). Under ``auto`` on a template that renders tools the engine handles them itself.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from famous.serve.errors import APIError, invalid

_TEXT_ANSWER = {
    "type": "object",
    "properties": {"content": {"type": "string"}},
    "required": ["content"],
    "additionalProperties": False,
}
# the client's own answer format wins over tool_choice auto (no call is offered then)
_OWN_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True)
class ToolPlan:
    """What the gateway does with a chat request's tools: ``choice`` ``required`` (a call of
    one of ``tools``, one when the client named it), ``auto`` (a call or a text answer) or
    ``none`` (no call: the tools are dropped)."""

    tools: list[dict[str, Any]]  # each {"name", "description", "parameters"}
    choice: Literal["required", "auto", "none"]

    def applies(self, features: frozenset[str]) -> bool:
        """Whether the gateway, not the engine, handles the tools: the engine constrains its
        answer to a schema, and its template renders no tools (or the call is forced)."""
        if "json_schema" not in features:
            return False
        return self.choice == "required" or "template_tools" not in features

    def schema(self) -> dict[str, Any]:
        options = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool["name"]},
                    "arguments": tool["parameters"] or {"type": "object"},
                },
                "required": ["name", "arguments"],
            }
            for tool in self.tools
        ]
        if self.choice == "auto":
            options.append(_TEXT_ANSWER)
        return options[0] if len(options) == 1 else {"anyOf": options}


def _functions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    tools = payload.get("tools")
    if not isinstance(tools, list) or not tools:
        raise invalid("tools must list at least one function to call", "tools")
    functions = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid(f"tools[{i}] must be {{type: function, function: {{name}}}}", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(f"tools[{i}].function.parameters must be a JSON schema", "tools")
        functions.append(
            {
                "name": function["name"],
                "description": str(function.get("description") or ""),
                "parameters": parameters,
            }
        )
    return functions


def tool_plan(payload: dict[str, Any]) -> ToolPlan | None:
    """The plan for a chat request's tools, or None when it lists none; malformed tools or
    choices are a 400 naming the field."""
    choice = payload.get("tool_choice")
    tools = payload.get("tools")
    if choice == "none":
        return ToolPlan([], "none")
    if choice is None or choice == "auto":
        if tools is None or tools == []:
            return None
        wanted = payload.get("response_format")
        if isinstance(wanted, dict) and wanted.get("type") in _OWN_FORMATS:
            return ToolPlan([], "none")
        return ToolPlan(_functions(payload), "auto")
    if choice == "required":
        return ToolPlan(_functions(payload), "required")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        chosen = [f for f in _functions(payload) if f["name"] == name]
        if not chosen:
            raise invalid(f"tool_choice names {name!r}, which tools does not list", "tool_choice")
        return ToolPlan(chosen, "required")
    raise invalid(
        "tool_choice must be auto, none, required or {type: function, function: {name}}",
        "tool_choice",
    )


def _plain_message(message: dict[str, Any]) -> dict[str, Any]:
    """History in roles every template knows: tool results as user text, earlier calls as
    the assistant's JSON."""
    if message.get("role") == "tool":
        return {"role": "user", "content": f"Tool result: {message.get('content') or ''}"}
    calls = message.get("tool_calls")
    if message.get("role") == "assistant" and isinstance(calls, list) and calls:
        text = json.dumps([c.get("function") for c in calls if isinstance(c, dict)])
        return {"role": "assistant", "content": text}
    return message


_INSTRUCTIONS = {
    "required": "Answer with a call of one of these tools, as JSON "
    '{"name": ..., "arguments": {...}}:',
    "auto": "You can call these tools. When one of them answers the user's request, answer "
    'with a call of it, as JSON {"name": ..., "arguments": {...}}; otherwise answer in '
    'text, as JSON {"content": "your answer"}:',
}
_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


def without_tools(body: dict[str, Any]) -> dict[str, Any]:
    """The request with no tools to offer (``tool_choice: none`` on a template that renders
    none): the tools dropped and the history in plain roles."""
    request = {k: v for k, v in body.items() if k not in _TOOL_FIELDS}
    request["messages"] = [_plain_message(m) for m in body["messages"]]
    return request


def engine_request(plan: ToolPlan, body: dict[str, Any]) -> dict[str, Any]:
    """The engine's request: the tools described in a system message, the history in plain
    roles, the answer constrained to the plan's schema; never streamed (the gateway
    answers)."""
    listing = "\n".join(
        f"- {t['name']}: {t['description']} parameters: {json.dumps(t['parameters'])}"
        for t in plan.tools
    )
    system = {"role": "system", "content": f"{_INSTRUCTIONS[plan.choice]}\n{listing}"}
    request = without_tools(body)
    request.pop("stream", None)
    request.pop("stream_options", None)
    request["messages"].insert(0, system)
    request["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": plan.schema(), "strict": True},
    }
    return request


_TEXT_START = re.compile(r'\s*\{\s*"content"\s*:\s*"')


def _cut_text(raw: str) -> str | None:
    """The text of a ``{"content": ...}`` answer that max_tokens cut short, as far as it
    got (an escape cut in half is left out); None when the answer was no text."""
    start = _TEXT_START.match(raw)
    if start is None:
        return None
    rest = raw[start.end() :]
    for end in range(len(rest), max(-1, len(rest) - 8), -1):
        try:
            return json.loads(f'"{rest[:end]}"')
        except ValueError:
            continue
    return None


def _message(answer: dict[str, Any], text_allowed: bool) -> tuple[dict[str, Any], str]:
    """The engine's constrained answer as OpenAI's assistant message, with its finish reason:
    a call (``tool_calls``), or where ``text_allowed`` (``auto``) a text (``stop``, or
    ``length`` when max_tokens cut it)."""
    try:
        choice = answer["choices"][0]
        raw = choice["message"]["content"]
        parsed = json.loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("name"), str):
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": parsed["name"],
                    "arguments": json.dumps(parsed.get("arguments", {})),
                },
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        if text_allowed and isinstance(parsed, dict) and isinstance(parsed.get("content"), str):
            return {"role": "assistant", "content": parsed["content"]}, "stop"
        raise ValueError("neither a call nor a text")
    except (KeyError, IndexError, TypeError, ValueError):
        choices = answer.get("choices")
        if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason") == "length":
            cut = str((choices[0].get("message") or {}).get("content") or "")
            text = _cut_text(cut) if text_allowed else None
            if text is not None:
                return {"role": "assistant", "content": text}, "length"
            what = "the answer (a tool call or a text)" if text_allowed else "the tool call"
            raise invalid(
                f"max_tokens ended {what} before its JSON was complete; raise max_tokens",
                "max_tokens",
            ) from None
        raise APIError(
            502, "the engine did not answer with a tool call", code="engine_error"
        ) from None


def completion(answer: dict[str, Any], text_allowed: bool = False) -> dict[str, Any]:
    """The engine's constrained answer as OpenAI's completion: a call, or (where
    ``text_allowed``) a text."""
    message, finish = _message(answer, text_allowed)
    return {
        "id": answer.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": answer.get("created") or int(time.time()),
        "model": answer.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": answer.get("usage"),
    }


def _deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message as OpenAI streams it: a text in one content delta; a call's name once, with
    its id, then its arguments."""
    if not message.get("tool_calls"):
        return [{"role": "assistant", "content": message["content"]}]
    call = message["tool_calls"][0]
    opening = {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["function"]["name"], "arguments": ""},
    }
    return [
        {"role": "assistant", "content": None, "tool_calls": [opening]},
        {"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]},
    ]


def stream_events(answer: dict[str, Any], include_usage: bool, text_allowed: bool = False) -> bytes:
    """The same answer as the server-sent events OpenAI streams."""
    whole = completion(answer, text_allowed)
    (choice,) = whole["choices"]
    head = {k: whole[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
        for d in _deltas(choice["message"])
    ]
    chunks.append(
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    )
    if include_usage and whole.get("usage"):
        chunks.append({**head, "choices": [], "usage": whole["usage"]})
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return b"".join(events) + b"data: [DONE]\n\n"
