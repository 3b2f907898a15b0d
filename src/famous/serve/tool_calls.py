"""Forced tool calls on any model: ``tool_choice`` ``required`` or a named function.

Small models' chat templates often know nothing of tools (SmolLM2's does not), and engines
then answer plain text where the client demanded a call. When the client forces a call and
the engine can constrain its output to a JSON schema, the gateway asks the engine for
``{"name": ..., "arguments": {...}}`` under a schema built from the tools' own parameter
schemas (a call is guaranteed, its arguments valid JSON of the right shape), then answers
in OpenAI's format: a ``tool_calls`` message, or for a stream the deltas OpenAI sends (the
name once, then the arguments, then ``finish_reason: tool_calls``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from famous.serve.errors import APIError, invalid


@dataclass(frozen=True)
class ForcedCall:
    """The tools the answer may call (one, when the client named it)."""

    tools: list[dict[str, Any]]  # each {"name", "description", "parameters"}

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
        return options[0] if len(options) == 1 else {"anyOf": options}


def _functions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    tools = payload.get("tools")
    if not isinstance(tools, list) or not tools:
        raise invalid("tool_choice forces a call, but tools lists none", "tools")
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


def forced_call(payload: dict[str, Any]) -> ForcedCall | None:
    """The forced call a chat request asks for, or None (no tools, or ``auto`` / ``none``)."""
    choice = payload.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return None
    if choice == "required":
        return ForcedCall(_functions(payload))
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        chosen = [f for f in _functions(payload) if f["name"] == name]
        if not chosen:
            raise invalid(f"tool_choice names {name!r}, which tools does not list", "tool_choice")
        return ForcedCall(chosen)
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


def engine_request(call: ForcedCall, body: dict[str, Any]) -> dict[str, Any]:
    """The engine's request: the tools described in a system message, the history in plain
    roles, the answer constrained to a call; never streamed (the gateway answers)."""
    listing = "\n".join(
        f"- {t['name']}: {t['description']} parameters: {json.dumps(t['parameters'])}"
        for t in call.tools
    )
    system = {
        "role": "system",
        "content": "Answer with a call of one of these tools, as JSON "
        f'{{"name": ..., "arguments": {{...}}}}:\n{listing}',
    }
    request = {
        k: v
        for k, v in body.items()
        if k not in ("tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options")
    }
    request["messages"] = [system, *(_plain_message(m) for m in body["messages"])]
    request["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": call.schema(), "strict": True},
    }
    return request


def _the_call(answer: dict[str, Any]) -> dict[str, Any]:
    try:
        choice = answer["choices"][0]
        call = json.loads(choice["message"]["content"])
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError("not a call")
    except (KeyError, IndexError, TypeError, ValueError):
        if answer.get("choices") and answer["choices"][0].get("finish_reason") == "length":
            raise invalid(
                "max_tokens ended the tool call before its arguments were complete; "
                "raise max_tokens",
                "max_tokens",
            ) from None
        raise APIError(
            502, "the engine did not answer with a tool call", code="engine_error"
        ) from None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
    }


def completion(answer: dict[str, Any]) -> dict[str, Any]:
    """The engine's constrained answer as OpenAI's tool-call completion."""
    call = _the_call(answer)
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": answer.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": answer.get("created") or int(time.time()),
        "model": answer.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": answer.get("usage"),
    }


def stream_events(answer: dict[str, Any], include_usage: bool) -> bytes:
    """The same answer as the server-sent events OpenAI streams for a tool call."""
    whole = completion(answer)
    call = whole["choices"][0]["message"]["tool_calls"][0]
    head = {k: whole[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    opening = {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["function"]["name"], "arguments": ""},
    }
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [opening]},
        {"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]},
    ]
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    if include_usage and whole.get("usage"):
        chunks.append({**head, "choices": [], "usage": whole["usage"]})
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return b"".join(events) + b"data: [DONE]\n\n"
