"""Hostile JSON schemas: what a request hands llama.cpp's grammar compiler is bounded
(``famous.serve.schema_limits``), and whatever passes the bounds leaves the engine alive.

The gateway's refusals are checked one by one; then hypothesis writes schemas of every
shape (nested objects and arrays, enums, anyOf, patterns, bounds, refs) and sends them to
the real engines behind the gateway: each gets a 200 or a 4xx, never a 5xx, and the engine
answers the next request.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_harness import Gateway

from famous.serve import schema_limits

pytestmark = pytest.mark.slow


def _nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def _ask(gateway: Gateway, schema: object, max_tokens: int = 1) -> httpx.Response:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    return httpx.post(
        gateway.v1 + "/chat/completions",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
        timeout=120,
    )


REFUSED = {
    "enum of 5000": ({"enum": [f"v{i}" for i in range(5000)]}, "alternatives"),
    "600 anyOf branches": ({"anyOf": [{"const": i} for i in range(600)]}, "alternatives"),
    "nested 40 deep": (_nested(40), "nests deeper"),
    "minItems 10^6": ({"type": "array", "minItems": 1_000_000}, "minItems"),
    "remote $ref": ({"$ref": "https://example.com/schema.json"}, "$ref"),
    "a string": ("object", "must be a JSON schema"),
    "empty enum (crashed llama_cpp.server)": ({"enum": []}, "non-empty list"),
    "empty anyOf": ({"type": "object", "properties": {"a": {"anyOf": []}}}, "non-empty list"),
    "huge": ({"description": "x" * 100_000}, "larger than"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unbounded_schemas_get_a_400_naming_the_bound(gateway: Gateway, case: str) -> None:
    schema, words = REFUSED[case]
    resp = _ask(gateway, schema)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "response_format.json_schema.schema"
    assert words in error["message"]


def test_tool_parameters_are_bounded_too(gateway: Gateway) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": _nested(100)}}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    resp = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"].startswith("tools[0]")
    many = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    resp = httpx.post(gateway.v1 + "/chat/completions", json={**body, "tools": many}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "tools"


def test_realistic_schemas_pass(gateway: Gateway) -> None:
    countries = {"enum": [f"C{i:03d}" for i in range(250)]}
    schema = {
        "type": "object",
        "properties": {"country": countries, "tags": {"type": "array", "items": _nested(8)}},
        "required": ["country"],
    }
    schema_limits.check_schema(schema, "s")
    assert _ask(gateway, schema, max_tokens=4).status_code == 200


_leaf = st.one_of(
    st.sampled_from(
        [{"type": t} for t in ("string", "integer", "number", "boolean", "null", "object")]
    ),
    st.builds(lambda v: {"enum": v}, st.lists(st.text(max_size=5) | st.integers(), max_size=8)),
    st.builds(
        lambda p: {"type": "string", "pattern": p},
        st.sampled_from(["^[a-z]+$", "(a+)+b", "((((", "[", "\\d{2,}", "^(?:x|y)*$", ".*"]),
    ),
    st.builds(
        lambda lo, hi: {"type": "integer", "minimum": lo, "maximum": hi},
        st.integers(-(10**20), 10**20),
        st.integers(-(10**20), 10**20),
    ),
    st.builds(lambda n: {"type": "string", "minLength": n, "maxLength": n + 3}, st.integers(0, 64)),
    st.just({"$ref": "#/$defs/missing"}),
    st.just({"$ref": "#"}),
    st.just(True),
)
_schemas = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)[:2]},
            st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), inner, max_size=4),
        ),
        st.builds(
            lambda items, n: {"type": "array", "items": items, "minItems": n},
            inner,
            st.integers(0, 6),
        ),
        st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda options: {"allOf": options}, st.lists(inner, min_size=1, max_size=2)),
    ),
    max_leaves=12,
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=_schemas)
def test_any_schema_leaves_the_engine_answering(gateway: Gateway, schema: object) -> None:
    resp = _ask(gateway, schema)
    assert resp.status_code < 500 or resp.status_code == 501, (schema, resp.text)
    client = openai.OpenAI(base_url=gateway.v1, api_key="-", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    assert reply.choices, schema
