"""Property: no request makes the gateway itself answer 5xx. Hypothesis generates bodies
(any JSON, near-valid requests with hostile values), content types, Host and Origin
headers for every route; the gateway runs in-process over no models, so a request
that passes every check ends in a 404 for its model instead of starting an engine."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from famous.serve.app import create_app
from famous.serve.models import ModelRegistry
from famous.serve.scheduler import Scheduler

ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("POST", "/famous/api/models"),
    ("POST", "/famous/api/load"),
    ("POST", "/famous/api/stop"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/resp_x"),
    ("DELETE", "/v1/responses/resp_x"),
    ("GET", "/v1/models"),
    ("GET", "/famous/api/ps"),
    ("GET", "/metrics"),
    ("GET", "/health"),
    ("POST", "/api/chat"),
    ("POST", "/api/generate"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("POST", "/api/copy"),
    ("GET", "/api/tags"),
    ("GET", "/api/ps"),
    ("GET", "/openapi.json"),
]
TOKEN = "fuzz-admin-token"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]), "content": json_values},
    optional={"tool_call_id": json_values, "name": json_values},
)
FIELDS = [
    "model", "messages", "prompt", "input", "max_tokens", "temperature", "top_p", "top_k",
    "min_p", "n", "stream", "stop", "seed", "logit_bias", "repeat_penalty", "tools",
    "response_format", "tool_choice", "name", "path", "runtime", "configuration", "all",
    "embedding", "query", "documents", "top_n", "return_documents", "options", "format",
    "images", "keep_alive", "system", "raw", "source", "destination", "stop_sequences",
    "metadata", "instructions",
    "max_output_tokens", "text", "store", "previous_response_id",
]  # fmt: skip
VALID = {
    "/v1/chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "tiny", "prompt": "hi"},
    "/v1/embeddings": {"model": "tiny", "input": "hi"},
    "/v1/rerank": {"model": "tiny", "query": "hi", "documents": ["a", {"text": "b"}]},
    "/famous/api/models": {"name": "tiny", "path": "/etc/hostname"},
    "/famous/api/load": {"model": "tiny"},
    "/famous/api/stop": {"model": "tiny"},
    "/api/chat": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    "/api/generate": {"model": "tiny", "prompt": "hi", "options": {"num_predict": 4}},
    "/api/embed": {"model": "tiny", "input": ["hi"]},
    "/api/embeddings": {"model": "tiny", "prompt": "hi"},
    "/api/show": {"model": "tiny:latest"},
    "/api/copy": {"source": "tiny", "destination": "tiny2"},
    "/v1/messages": {
        "model": "tiny",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/messages/count_tokens": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "tiny", "input": [{"role": "user", "content": "hi"}]},
}
HOSTILE_VALUES = [10**400, -(10**400), 2**63, -1, 0.5, 1e308, "\ud800", "\x00", "a\nb", "", [], {}]
HOSTILE_VALUES += ["required", {"type": "function", "function": {"name": 5}}, [{"function": 1}]]
HOSTILE_VALUES += [[{"type": "function_call"}], {"format": {"type": "json_schema"}}, "resp_x"]
field_values = st.sampled_from(HOSTILE_VALUES) | json_values | st.lists(message, max_size=2)


def _encode(body: Any) -> bytes:
    return json.dumps(body).encode()  # keeps lone surrogates as escapes


def bodies_for(path: str) -> st.SearchStrategy[bytes]:
    """The route's valid request with one to three fields replaced by anything, or anything."""
    near_valid = st.builds(
        lambda changes: {**VALID.get(path, {}), **changes},
        st.dictionaries(st.sampled_from(FIELDS), field_values, min_size=1, max_size=3),
    )
    junk = st.binary(max_size=200) | st.sampled_from(
        [b"", b"[" * 5000, b'{"model": 1e999}', b"\xff\xfe", b"{"]
    )
    return st.one_of(near_valid.map(_encode), json_values.map(_encode), junk)


requests = st.sampled_from(ROUTES).flatmap(lambda r: st.tuples(st.just(r), bodies_for(r[1])))


HOSTILE_HEADERS = {
    "content-type": ["text/plain", "application/x-www-form-urlencoded", "", "a/b+json"],
    "host": ["evil.example", "[::1]:1", "", "localhost:8324"],
    "origin": ["http://evil.example", "null", "x", "http://127.0.0.1"],
    "authorization": ["Bearer nope", "Basic x", ""],
    "prefer": ["wait=0", "wait=abc", "wait=1e400"],
}
# what a well-behaved local client sends, with at most one header changed
headers = st.builds(
    lambda changes: (
        {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"} | changes
    ),
    st.one_of(
        st.just({}),
        st.sampled_from(
            [{key: value} for key, values in HOSTILE_HEADERS.items() for value in values]
        ),
    ),
)


def _app():
    supervisor = Scheduler(ModelRegistry([], use_store=False), record=False)
    return create_app(supervisor, admin_token=TOKEN)


def _send(requests: list[tuple[str, str, bytes, dict]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [
                await http.request(m, p, content=b if m == "POST" else None, headers=h)
                for m, p, b, h in requests
            ]

    return asyncio.run(go())


def _check(resp: httpx.Response, what: object) -> None:
    assert resp.status_code < 500, (what, resp.text[:500])
    if resp.status_code >= 400:
        error = resp.json()["error"]  # OpenAI's {message, …}, or Ollama's string
        message = error if isinstance(error, str) else error["message"]
        assert isinstance(message, str) and "Traceback" not in resp.text, what


def test_every_field_of_every_route_with_every_hostile_value() -> None:
    """Exhaustive where random search is thin: each route's valid request with one field set
    to each hostile value (integers too large for a float, lone surrogates, NUL, newlines,
    wrong containers)."""
    good = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    cases = [(p, f, v) for p in VALID for f in FIELDS for v in HOSTILE_VALUES]
    sent = [("POST", p, _encode({**VALID[p], f: v}), good) for p, f, v in cases]
    for case, resp in zip(cases, _send(sent), strict=True):
        _check(resp, case)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests, extra=headers)
def test_no_request_gets_a_gateway_5xx(request: tuple[tuple[str, str], bytes], extra: dict) -> None:
    (method, path), body = request
    _check(_send([(method, path, body, extra)])[0], (path, body[:200], extra))


NAME_FIELDS = ("model", "name", "source", "destination")
BAD_NAMES = ["a\nb", "../etc/passwd", "x/../../y"]


def _attacks(path: str) -> list[tuple[str, bytes, dict]]:
    """(what, body, headers) of the attacks every POST route must refuse with a 4xx."""
    good = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    valid = VALID[path]
    attacks = [
        ("text/plain", _encode(valid), {**good, "content-type": "text/plain"}),
        ("foreign Host", _encode(valid), {**good, "host": "evil.example"}),
        ("nesting 1000 deep", b'{"model": "tiny", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", good),
        ("a number no float holds", _encode(valid)[:-1] + b', "temperature": 1e999}', good),
    ]
    for field in (f for f in NAME_FIELDS if f in valid):
        attacks += [(f"{field}={n!r}", _encode({**valid, field: n}), good) for n in BAD_NAMES]
    return attacks


def test_every_post_route_refuses_the_classic_attacks_and_registers_nothing() -> None:
    """Each POST route, the new protocols' included: a text/plain body (a cross-site form),
    a foreign Host (DNS rebinding), JSON nested 1,000 deep, a number too big for a float
    and names with a newline or ``..`` get a clean 4xx, and afterwards no listing shows a
    model of such a name (nothing was registered half-done)."""
    cases = [(path, *attack) for path in VALID for attack in _attacks(path)]
    sent = [("POST", path, body, headers) for path, _what, body, headers in cases]
    good = {"authorization": f"Bearer {TOKEN}"}
    listings = [("GET", p, b"", good) for p in ("/v1/models", "/api/tags", "/famous/api/ps")]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # the depth bound must not be the parser's recursion limit
    try:
        answers = _send(sent + listings)
    finally:
        sys.setrecursionlimit(limit)
    for (path, what, _body, _headers), resp in zip(cases, answers, strict=False):
        assert 400 <= resp.status_code < 500, (path, what, resp.status_code, resp.text[:300])
        if what == "text/plain":
            assert resp.status_code == 415, (path, resp.text[:200])
        if what == "foreign Host":
            assert resp.status_code == 403, (path, resp.text[:200])
    for resp in answers[len(cases) :]:
        assert resp.status_code == 200, resp.text[:200]
        assert not any(bad in resp.text for bad in ("..", "\\n", "passwd")), resp.text[:500]
