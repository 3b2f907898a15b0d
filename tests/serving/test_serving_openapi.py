"""The published contract, ``GET /openapi.json``, and schemathesis run against it.

schemathesis (written by others, from the document alone) generates valid and invalid
requests for every route, with and without the admin credential; the gateway runs in-process
over no models, so a request that passes every check ends in a 404 for its model.
No answer may be a gateway 5xx, and every error must be OpenAI-shaped.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance

from famous.serve.app import create_app
from famous.serve.fields import EXTENSION_RANGES, OPENAI_RANGES
from famous.serve.models import ModelRegistry
from famous.serve.scheduler import Scheduler

TOKEN = "schema-admin-token"


def _app():
    """schemathesis's in-process client names its host "testserver": the gateway is bound
    to that name, so the Host check (tested on its own elsewhere) lets it through."""
    supervisor = Scheduler(ModelRegistry([], use_store=False), record=False)
    return create_app(supervisor, admin_token=TOKEN, host="testserver")


@pytest.fixture(autouse=True, scope="module")
def private_home(tmp_path_factory: pytest.TempPathFactory):
    """The console's routes read and write FAMOUS_HOME (pins, installs): here a home of
    its own, and a Hub address that refuses (no request reaches the real Hub)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAMOUS_HOME", str(tmp_path_factory.mktemp("famous-home")))
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        mp.delenv("HF_TOKEN", raising=False)
        yield


APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _published() -> dict:
    async def go() -> dict:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            resp = await http.get("/openapi.json")
            assert resp.status_code == 200
            return resp.json()

    return asyncio.run(go())


def test_every_route_is_published_with_its_body() -> None:
    document = _published()
    paths = document["paths"]
    routes = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank")
    for path in (*routes, "/famous/api/models", "/api/chat", "/api/generate", "/api/embed"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        name = body["$ref"].rsplit("/", 1)[1]
        assert name in document["components"]["schemas"]
        assert paths[path]["post"]["responses"]["400"]["content"]
    assert {"/v1/models", "/health", "/metrics", "/famous/api/ps"} <= set(paths)
    assert paths["/famous/api/ps"]["get"]["security"] == [{"bearer": []}]


def test_published_bounds_are_the_ones_the_gateway_checks() -> None:
    sampling = _published()["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for key, (low, high, _integer) in (OPENAI_RANGES | EXTENSION_RANGES).items():
        bounded = next(s for s in sampling[key]["anyOf"] if "minimum" in s)
        assert (bounded["minimum"], bounded["maximum"]) == (low, high), key


_REACH_THE_HUB = {
    ("POST", "/api/pull"),
    ("POST", "/famous/api/pulls"),
    ("GET", "/famous/api/hub/search"),
}


@pytest.mark.parametrize("credential", ["admin", "none"])
@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_schemathesis_finds_no_gateway_5xx(case, credential: str) -> None:
    if (case.method, case.path) in _REACH_THE_HUB and credential == "admin":
        return  # test_ollama_protocol and test_console_api pull and search a local Hub
    headers = {"authorization": f"Bearer {TOKEN}"} if credential == "admin" else {}
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, content_type_conformance])
    if response.status_code >= 400:
        error = response.json()["error"]  # OpenAI's {message, …}, or Ollama's string
        message = error if isinstance(error, str) else error["message"]
        assert isinstance(message, str) and "Traceback" not in response.text
