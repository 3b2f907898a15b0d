"""``POST /v1/rerank``: rerankers (GGUFs with rank pooling) on llama.cpp's llama-server.

The reranker is a random-weight BERT cross-encoder written by the tests, so its ranking
means nothing: the tests check the answer's shape, its order by score, ``top_n``, that each
document is scored once, and that the same request gets the same scores. What no engine
should see is refused in-process, before any engine starts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_harness import Gateway, serving, start_gateway, stop_gateway

from famous.serve import rerank
from famous.serve.app import create_app
from famous.serve.models import ModelRegistry, ModelSpec
from famous.serve.request_checks import MAX_RERANK_DOCUMENTS
from famous.serve.scheduler import Scheduler

QUERY = "hello world"
DOCUMENTS = ["the quick brown fox", "hello world", "red green blue", "one two three", "hello"]


def _error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and "Traceback" not in resp.text, resp.text
    return body["error"]


def _in_process(
    tiny_models: dict[str, Path], sent: list[tuple[bytes, dict[str, str]]], api_key: str | None
) -> list[httpx.Response]:
    """Requests to a gateway that has the reranker registered but never starts it."""
    spec = ModelSpec(name="rr", path=tiny_models["reranker"])
    app = create_app(
        Scheduler(ModelRegistry([spec], use_store=False), record=False), api_key=api_key
    )

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [await http.post("/v1/rerank", content=b, headers=h) for b, h in sent]

    return asyncio.run(go())


VALID = {"model": "rr", "query": QUERY, "documents": DOCUMENTS}
MALFORMED = [
    ({"model": "rr", "documents": DOCUMENTS}, "query"),
    ({**VALID, "query": ""}, "query"),
    ({**VALID, "query": ["hello"]}, "query"),
    ({**VALID, "query": {"text": "hello"}}, "query"),
    ({**VALID, "documents": []}, "documents"),
    ({**VALID, "documents": "hello"}, "documents"),
    ({**VALID, "documents": ["a", 5]}, "documents"),
    ({**VALID, "documents": [["a"]]}, "documents"),
    ({**VALID, "documents": [{"text": 1}]}, "documents"),
    ({**VALID, "documents": [{"content": "a"}]}, "documents"),
    ({**VALID, "documents": ["x"] * (MAX_RERANK_DOCUMENTS + 1)}, "documents"),
    ({**VALID, "top_n": 0}, "top_n"),
    ({**VALID, "top_n": -1}, "top_n"),
    ({**VALID, "top_n": 1.5}, "top_n"),
    ({**VALID, "top_n": True}, "top_n"),
    ({**VALID, "top_n": "2"}, "top_n"),
    ({**VALID, "return_documents": "yes"}, "return_documents"),
    ({**VALID, "model": 5}, "model"),
    ({"query": QUERY, "documents": DOCUMENTS}, "model"),
]


def test_malformed_rerank_bodies_get_a_400_naming_the_field(
    tiny_models: dict[str, Path],
) -> None:
    json_type = {"content-type": "application/json"}
    sent = [(json.dumps(body).encode(), json_type) for body, _ in MALFORMED]
    for (body, field), resp in zip(MALFORMED, _in_process(tiny_models, sent, None), strict=True):
        assert resp.status_code == 400, (body, resp.text)
        assert _error(resp)["param"] == field, body
    hostile = [
        (b'{"model": "rr", "query": ', json_type),
        (b"[" * 5000, json_type),
        (b'["rr", "hello"]', json_type),
        (json.dumps(VALID).encode(), {"content-type": "text/plain"}),
    ]
    statuses = [r.status_code for r in _in_process(tiny_models, hostile, None)]
    assert statuses == [400, 400, 400, 415]


def test_rerank_needs_the_api_key_when_one_is_set(tiny_models: dict[str, Path]) -> None:
    body = json.dumps(VALID).encode()
    sent = [
        (body, {"content-type": "application/json"}),
        (body, {"content-type": "application/json", "authorization": "Bearer wrong"}),
    ]
    for resp in _in_process(tiny_models, sent, "sekret"):
        assert resp.status_code == 401
        assert _error(resp)["code"] == "invalid_api_key"


def test_answers_are_sorted_cut_and_decorated_by_the_gateway() -> None:
    engine = {
        "results": [
            {"index": 1, "relevance_score": 0.5},
            {"index": 0, "relevance_score": 2.0},
            {"index": 2, "relevance_score": 0.5},
        ],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
    out = rerank.answer("rr", engine, ["a", "b", "c"])
    assert out == {
        "object": "list",
        "model": "rr",
        "results": [
            {"index": 0, "relevance_score": 2.0},
            {"index": 1, "relevance_score": 0.5},  # a tie goes to the lower index
            {"index": 2, "relevance_score": 0.5},
        ],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
    best = rerank.answer("rr", engine, ["a", "b", "c"], top_n=1, return_documents=True)
    assert best["results"] == [{"index": 0, "relevance_score": 2.0, "document": {"text": "a"}}]
    assert len(rerank.answer("rr", engine, ["a", "b", "c"], top_n=50)["results"]) == 3
    unusual = {"results": engine["results"], "usage": {"prompt_tokens": "9"}}
    assert "usage" not in rerank.answer("rr", unusual, ["a", "b", "c"])


@pytest.mark.parametrize(
    "engine",
    [
        {},
        {"results": "none"},
        {"results": [{"index": 0, "relevance_score": 1.0}]},  # one of two documents
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 0, "relevance_score": 2}]},
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 2, "relevance_score": 2}]},
        {"results": [{"index": 0, "relevance_score": 1}, {"index": True, "relevance_score": 2}]},
        {"results": [{"index": 0, "relevance_score": 1}, {"index": 1, "relevance_score": None}]},
        {"results": [{"index": 0, "relevance_score": 1}, "x"]},
    ],
)
def test_an_engine_answer_that_does_not_score_each_document_once_is_unreadable(
    engine: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        rerank.answer("rr", engine, ["a", "b"])


# ------------------------------------------------------------------ through real engines


@pytest.fixture(scope="module")
def native(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]
) -> Iterator[Gateway]:
    """A gateway on llama-server with a chat model, an embedding model and a reranker."""
    models = {"tiny": tiny_models["llama"], "emb": tiny_models["bert"]}
    models["rr"] = tiny_models["reranker"]
    with serving(tmp_path_factory.mktemp("famous-home"), models) as gw:
        yield gw


def _post(gw: Gateway, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(timeout=120, trust_env=False) as http:
        return http.post(gw.v1 + path, json=body)


@pytest.mark.slow
def test_a_reranker_on_llama_server_ranks_every_document(native: Gateway) -> None:
    resp = _post(native, "/rerank", VALID)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["object"] == "list" and answer["model"] == "rr"
    assert answer["usage"]["prompt_tokens"] > 0
    results = answer["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    scores = [r["relevance_score"] for r in results]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) > 1  # random weights still tell documents apart
    again = _post(native, "/rerank", VALID).json()["results"]
    assert [r["index"] for r in again] == [r["index"] for r in results]
    assert [r["relevance_score"] for r in again] == pytest.approx(scores, abs=1e-5)

    cut = _post(native, "/rerank", {**VALID, "top_n": 2, "return_documents": True}).json()
    assert [r["index"] for r in cut["results"]] == [r["index"] for r in results[:2]]
    assert [r["document"]["text"] for r in cut["results"]] == [
        DOCUMENTS[r["index"]] for r in results[:2]
    ]
    every = _post(native, "/rerank", {**VALID, "top_n": 99}).json()["results"]
    assert len(every) == len(DOCUMENTS)  # top_n past the documents answers them all
    objects = [{"text": d} for d in DOCUMENTS]  # Cohere's {text} documents
    same = _post(native, "/rerank", {**VALID, "documents": objects}).json()["results"]
    assert [r["index"] for r in same] == [r["index"] for r in results]


@pytest.mark.slow
def test_the_wrong_model_for_a_route_gets_a_400_naming_its_engine(native: Gateway) -> None:
    """Rerank on a chat or embedding model, anything but rerank on the reranker."""
    for model in ("tiny", "emb"):
        resp = _post(native, "/rerank", {**VALID, "model": model})
        assert resp.status_code == 400, resp.text
        error = _error(resp)
        assert error["param"] == "model"
        assert f"llama-server (the engine of {model!r}) cannot rerank" in error["message"]
    chat = {"model": "rr", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for path, body in (
        ("/chat/completions", chat),
        ("/completions", {"model": "rr", "prompt": "hi", "max_tokens": 2}),
        ("/embeddings", {"model": "rr", "input": "hi"}),
    ):
        resp = _post(native, path, body)
        assert resp.status_code == 400, (path, resp.text)
        assert "it serves a reranker (POST /v1/rerank)" in _error(resp)["message"], path


@pytest.mark.slow
def test_a_reranker_on_llama_cpp_python_names_llama_server(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    gw = start_gateway(
        tmp_path / "home", "--model", f"rr={tiny_models['reranker']}", server="llama-cpp-python"
    )
    try:
        resp = _post(gw, "/rerank", VALID)
        assert resp.status_code == 400, resp.text
        message = _error(resp)["message"]
        assert "llama_cpp.server (the engine of 'rr') cannot rerank" in message
        assert "famous install-component llama-server" in message
    finally:
        stop_gateway(gw)
