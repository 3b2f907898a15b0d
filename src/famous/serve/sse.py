"""OpenAI's server-sent events as the gateway reads and writes them while it translates a
stream (Responses, Anthropic, Ollama, the usage counter): the hot path, once per token.

One reader for every translator: the ``data:`` payloads of complete events in bytes cut
anywhere, CRLF or LF. JSON here is orjson's (about 5x faster than the standard library's
on these small objects), falling back to ``json`` for what orjson refuses but an engine
may send (``NaN``); a request's own body is parsed strictly elsewhere
(``famous.serve.request_checks.parse_json``).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

DONE = b"[DONE]"


def loads(data: bytes | str) -> Any:
    """The JSON value of one payload; ``ValueError`` when it is none."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (``NaN`` becomes ``null``)."""
    return orjson.dumps(value)


def event(value: Any, name: str | None = None) -> bytes:
    """One server-sent event carrying ``value``, named ``name`` when given."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(value) + b"\n\n"


class EventReader:
    """The ``data:`` payload of each complete event, from bytes that arrive in any cuts
    (an event's several ``data:`` lines joined by a newline; comment-only events left out)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self.pending += chunk
        if b"\r" in self.pending:
            self.pending = self.pending.replace(b"\r\n", b"\n")
        *complete, self.pending = self.pending.split(b"\n\n")
        payloads = []
        for block in complete:
            if block.startswith(b"data:") and b"\n" not in block:  # the usual one-line event
                payloads.append(block[5:].strip())
                continue
            lines = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if lines:
                payloads.append(b"\n".join(lines))
        return payloads


def chunks(reader: EventReader, chunk: bytes) -> list[dict[str, Any] | None]:
    """The JSON objects of the complete events in ``chunk``, ``None`` for ``[DONE]``;
    payloads that are no JSON object (an engine's comment) are left out."""
    out: list[dict[str, Any] | None] = []
    for payload in reader.feed(chunk):
        if payload == DONE:
            out.append(None)
            continue
        try:
            value = loads(payload)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
