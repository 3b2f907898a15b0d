"""The one reader of OpenAI's event streams every translator uses, and the usage counter
that counts a stream's text without parsing each chunk: both checked against the standard
library's JSON on streams cut anywhere."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from famous.serve import sse
from famous.serve.stream_usage import UsageCounter


def _event(value: Any) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def test_events_cut_anywhere_read_the_same() -> None:
    raw = (
        _event({"a": 1})
        + b": a comment line\n\n"
        + b'data: {"b":\r\ndata: 2}\r\n\r\n'
        + b"event: named\ndata: [1, 2]\n\n"
        + b"data: [DONE]\n\n"
    )
    for cut in range(1, len(raw)):
        reader = sse.EventReader()
        got = sse.chunks(reader, raw[:cut]) + sse.chunks(reader, raw[cut:])
        assert got == [{"a": 1}, {"b": 2}, None]  # the list payload is no chunk: left out
        assert reader.pending == b""


def test_what_orjson_refuses_an_engine_may_still_send() -> None:
    assert sse.chunks(sse.EventReader(), b'data: {"logprob": NaN}\n\n')[0]["logprob"] != 0
    assert sse.chunks(sse.EventReader(), b"data: {not json}\n\n") == []
    assert sse.event({"x": 1}, "done") == b'event: done\ndata: {"x":1}\n\n'


_text = st.text(alphabet=st.sampled_from(['"', "\\", "c", "o", "n", "t", "e", ":", " ", "é", "\n"]))
_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(st.none(), _text),
        "reasoning_content": _text,
        "tool_calls": st.just([{"index": 0, "function": {"arguments": '{"content": "x"}'}}]),
    },
)
_choice = st.one_of(
    st.fixed_dictionaries({"index": st.just(0), "delta": _delta}),
    st.fixed_dictionaries({"index": st.just(0), "text": _text}),  # /v1/completions
)


def _reference_count(chunks: list[dict[str, Any]]) -> int:
    """What the counter counted when it parsed every chunk: one per choice with text."""
    count = 0
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            count += bool(text)
    return count


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_choice, max_size=2), min_size=1, max_size=12), st.booleans())
def test_the_counter_counts_text_as_a_parser_would(
    choice_lists: list[list[dict[str, Any]]], spaced: bool
) -> None:
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "choices": c} for c in choice_lists]
    separators = (", ", ": ") if spaced else (",", ":")
    raw = b"".join(
        b"data: " + json.dumps(c, separators=separators).encode() + b"\n\n" for c in chunks
    )
    counter = UsageCounter()
    passed = counter.feed(raw[:7]) + counter.feed(raw[7:] + b"data: [DONE]\n\n")
    assert passed == raw  # no usage from the engine: every event goes on unchanged
    assert counter.finished and not counter.engine_usage
    assert counter.completion_tokens == _reference_count(chunks)
    closing = json.loads(counter.closing(prompt_tokens=3).split(b"\n\n")[0][6:])
    assert closing["usage"]["completion_tokens"] == _reference_count(chunks)
    assert closing["id"] == "c1" and closing["choices"] == []


def test_usage_that_came_with_a_choice_goes_on_a_chunk_of_its_own() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
    last = {"id": "c", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}]}
    counter = UsageCounter()
    out = counter.feed(_event({**last, "usage": usage}) + b"data: [DONE]\n\n")
    first, alone = (json.loads(e[6:]) for e in out.strip().split(b"\n\n"))
    assert "usage" not in first and first["choices"] == last["choices"]
    assert alone == {"id": "c", "object": None, "created": None, "model": None, "choices": []} | {
        "usage": usage
    }
    assert counter.engine_usage and counter.closing(None) == b"data: [DONE]\n\n"
