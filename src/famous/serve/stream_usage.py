"""``stream_options.include_usage`` as OpenAI sends it, whatever the engine.

OpenAI ends such a stream with one more chunk, ``choices: []`` and the request's ``usage``;
clients that track context or cost read it. Engines differ: llama-cpp-python's server sends
no usage at all, and llama-server's ``/v1/completions`` puts it into the chunk that
finishes the choice. When the engine sends none, the gateway counts the completion's tokens
from the stream (llama-cpp-python sends one content chunk per generated token) and asks the
engine for the prompt's count with the same request at ``max_tokens: 1`` (the engine reuses
the prompt it has just processed); a usage that came with a choice is sent again on a chunk
of its own. Only streams that ask for usage are parsed; every other is relayed byte for
byte.
"""

from __future__ import annotations

import re
from typing import Any

from famous.serve import sse

DONE = b"data: [DONE]"
#: a choice's non-empty text, in a chunk's JSON: a key in quotes can only be a key (quotes
#: inside strings are escaped), so this counts what ``delta.content`` / ``text`` carry
#: without parsing the chunk; ``"reasoning_content"`` does not match.
_TEXT = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return (
        bool(body.get("stream"))
        and isinstance(options, dict)
        and bool(options.get("include_usage"))
    )


def prompt_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request that makes the engine count the prompt: the same, one token, no stream."""
    request = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "n")}
    return {**request, "max_tokens": 1}


class UsageCounter:
    """Reads a stream's events as they pass: counts content chunks, holds back ``[DONE]``
    (the usage chunk goes before it) and says whether the engine sent usage itself."""

    def __init__(self) -> None:
        self.pending = b""
        self.completion_tokens = 0
        self.head: dict[str, Any] = {}
        self.engine_usage = False
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in ``chunk`` (with what came before), to pass on now."""
        self.pending += chunk
        if b"\r" in self.pending:  # CRLF events (no engine famous runs sends them) as LF
            self.pending = self.pending.replace(b"\r\n", b"\n")
        events = self.pending.split(b"\n\n")
        self.pending = events.pop()
        passed = []
        for event in events:
            if event.strip() == DONE:
                self.finished = True
                continue
            passed.append(self._read(event))
        return b"".join(passed)

    def _read(self, event: bytes) -> bytes:
        """The event as it goes on: one whose usage came with a choice becomes two. Only
        the first chunk and one with usage are parsed; the others are counted as bytes."""
        whole = event + b"\n\n"
        if not event.startswith(b"data: "):
            return whole
        if self.head and b'"usage"' not in event:
            self.completion_tokens += len(_TEXT.findall(event))
            return whole
        try:
            data = sse.loads(event[6:])
        except ValueError:
            return whole
        if not isinstance(data, dict):
            return whole
        self.head = self.head or {k: data.get(k) for k in ("id", "object", "created", "model")}
        self.completion_tokens += len(_TEXT.findall(event))
        usage = data.get("usage")
        if not usage:
            return whole
        self.engine_usage = True
        if not data.get("choices"):
            return whole
        answer = {k: v for k, v in data.items() if k != "usage"}
        alone = {**self.head, "choices": [], "usage": usage}
        return sse.event(answer) + sse.event(alone)

    def closing(self, prompt_tokens: int | None) -> bytes:
        """What ends the stream: the usage chunk (unless the engine sent one, or the prompt
        could not be counted) and ``[DONE]``."""
        tail = self.pending
        if self.engine_usage or prompt_tokens is None:
            return tail + DONE + b"\n\n"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": prompt_tokens + self.completion_tokens,
        }
        return tail + sse.event({**self.head, "choices": [], "usage": usage}) + DONE + b"\n\n"


def prompt_tokens(answer: bytes) -> int | None:
    """``usage.prompt_tokens`` of the engine's one-token answer, or None."""
    try:
        count = sse.loads(answer)["usage"]["prompt_tokens"]
    except (ValueError, KeyError, TypeError):
        return None
    return count if isinstance(count, int) and count >= 0 else None
