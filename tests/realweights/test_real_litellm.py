"""LiteLLM pointed at famous's gateway on the real SmolLM2 GGUF, through every protocol it
speaks to it, on each llama.cpp server: OpenAI chat (``openai/``), the Responses API
(``litellm.responses``), Anthropic Messages (``anthropic/``) and Ollama (``ollama_chat/``
on ``/api/chat``, ``ollama/`` on ``/api/generate``); invoke, stream, structured output and
tool calls, with an API key that each provider must carry its own way.

What LiteLLM does with a request is its own (the tests say so where it matters): for
Anthropic a JSON schema becomes a forced tool (``json_tool_call``); for Ollama it drops
``tool_choice`` (Ollama's API has none), and ``ollama/`` puts the tools in the prompt and
asks for ``format: json`` instead of sending them. Nothing may leave the machine: LiteLLM
reads its bundled cost map (``LITELLM_LOCAL_MODEL_COST_MAP``), sends no telemetry, and an
audit hook fails a test that resolves or connects to anything but loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import test_real_responses as real_responses
from realweights_helpers import CHAT, MODEL, names_paris
from serving_harness import SERVERS, Gateway, serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "sk-famous-litellm-test"
CHAT_PROVIDERS = ["openai", "anthropic", "ollama_chat"]  # chat templates: the same prompt
PROVIDERS = [*CHAT_PROVIDERS, "ollama"]
PARAMETERS = real_responses.WEATHER["parameters"]  # {city: string}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": PARAMETERS,
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY = real_responses.CITY  # {city: string, population: integer}
CITY_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "city", "schema": CITY, "strict": True},
}
CITY_QUESTION = [{"role": "user", "content": "The capital of France and its population?"}]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_reached: list[str] = []
_hooked: list[bool] = []  # an audit hook cannot be removed: added once per process


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Every host a test resolves or connects to (a Unix socket is local: not counted)."""
    if event == "socket.getaddrinfo":
        _reached.append(str(args[0]))
    elif event == "socket.connect" and isinstance(args[1], tuple):
        _reached.append(str(args[1][0]))


@pytest.fixture(scope="module")
def llm() -> ModuleType:
    """LiteLLM, imported offline: its cost map from the package, no telemetry."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # read at import
    litellm = importlib.import_module("litellm")
    litellm.telemetry = False
    litellm.drop_params = False  # a parameter LiteLLM cannot send is an error, not dropped
    return litellm


@pytest.fixture(scope="module", params=sorted(SERVERS))
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[Gateway]:
    """A gateway with an API key serving the real GGUF, once per llama.cpp server."""
    home = tmp_path_factory.mktemp("famous-home")
    with serving(home, {MODEL: smollm2_gguf}, request.param, "--api-key", KEY) as gw:
        yield gw


@pytest.fixture(autouse=True)
def stays_local(llm: ModuleType) -> Iterator[None]:
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked.append(True)
    _reached.clear()
    yield
    assert set(_reached) <= _LOOPBACK, f"LiteLLM reached beyond this machine: {set(_reached)}"


def _base(gateway: Gateway, provider: str) -> str:
    """OpenAI's clients take the ``/v1`` URL; Anthropic's and Ollama's the root."""
    return gateway.v1 if provider == "openai" else gateway.url


def _complete(llm: ModuleType, gateway: Gateway, provider: str, **request: Any) -> Any:
    defaults = {"messages": CHAT, "max_tokens": 48, "temperature": 0}
    return llm.completion(
        model=f"{provider}/{MODEL}",
        api_base=_base(gateway, provider),
        api_key=KEY,
        **{**defaults, **request},
    )


def _gathered(stream: Any) -> tuple[str, dict[int, dict[str, str]], str | None]:
    """A LiteLLM stream's text, its tool calls (index -> name, arguments) and last finish."""
    text, calls, finish = "", {}, None
    for chunk in stream:
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            whole = calls.setdefault(call.index, {"name": "", "arguments": ""})
            whole["name"] += call.function.name or ""
            whole["arguments"] += call.function.arguments or ""
        finish = choice.finish_reason or finish
    return text, calls, finish


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invoke_and_stream_give_the_same_answer(
    llm: ModuleType, gateway: Gateway, provider: str
) -> None:
    whole = _complete(llm, gateway, provider)
    text, calls, finish = _gathered(_complete(llm, gateway, provider, stream=True))
    answer = whole.choices[0].message.content
    assert answer and text == answer and not calls
    assert whole.choices[0].finish_reason == finish == "stop"
    assert whole.usage.prompt_tokens > 0 and 0 < whole.usage.completion_tokens < 48


def test_the_chat_protocols_answer_alike(llm: ModuleType, gateway: Gateway) -> None:
    """OpenAI, Anthropic and Ollama chat reach the same chat template: the same greedy
    answer and the same token counts, whichever LiteLLM provider sent them."""
    answers = [_complete(llm, gateway, provider) for provider in CHAT_PROVIDERS]
    texts = {reply.choices[0].message.content for reply in answers}
    assert len(texts) == 1 and names_paris(texts.pop())
    counts = {(r.usage.prompt_tokens, r.usage.completion_tokens) for r in answers}
    assert len(counts) == 1, counts


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_json_schema_response_format_validates(
    llm: ModuleType, gateway: Gateway, provider: str
) -> None:
    """``response_format`` json_schema: chat's own for OpenAI, ``format`` (the schema) for
    Ollama, a forced ``json_tool_call`` tool for Anthropic; the answer holds either way."""
    reply = _complete(
        llm, gateway, provider, messages=CITY_QUESTION, response_format=CITY_FORMAT, max_tokens=64
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), CITY)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_forced_tool_call_parses_invoked_and_streamed(
    llm: ModuleType, gateway: Gateway, provider: str
) -> None:
    request = {"messages": WEATHER_QUESTION, "tools": [WEATHER], "tool_choice": FORCED}
    reply = _complete(llm, gateway, provider, **request, max_tokens=64)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    assert reply.choices[0].finish_reason == "tool_calls"
    _, calls, finish = _gathered(_complete(llm, gateway, provider, **request, stream=True))
    assert finish == "tool_calls" and [c["name"] for c in calls.values()] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == json.loads(call.function.arguments)


def test_ollama_chat_calls_the_tool_it_is_given(llm: ModuleType, gateway: Gateway) -> None:
    """Ollama's API has no tool_choice (LiteLLM drops it): the tools reach /api/chat and the
    model, asked about the weather, calls the one it has; invoked and streamed alike."""
    request = {"messages": WEATHER_QUESTION, "tools": [WEATHER], "tool_choice": FORCED}
    reply = _complete(llm, gateway, "ollama_chat", **request, max_tokens=64)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    _, calls, finish = _gathered(
        _complete(llm, gateway, "ollama_chat", **request, max_tokens=64, stream=True)
    )
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(call.function.arguments)


def test_ollama_generate_gets_the_tools_in_its_prompt(llm: ModuleType, gateway: Gateway) -> None:
    """``ollama/`` sends no tools to /api/generate: LiteLLM writes them into the prompt and
    asks for ``format: json``, and makes a call of an answer shaped {name, arguments}. The
    gateway's part: the longer prompt is read and the answer is JSON (``format`` holds)."""
    bare = _complete(llm, gateway, "ollama", messages=WEATHER_QUESTION, max_tokens=1)
    try:
        told = _complete(
            llm, gateway, "ollama", messages=WEATHER_QUESTION, tools=[WEATHER], max_tokens=32
        )
    finally:
        llm.add_function_to_prompt = False  # LiteLLM sets it for the whole process
    assert told.usage.prompt_tokens > bare.usage.prompt_tokens + 20
    message = told.choices[0].message
    if message.tool_calls:
        assert message.tool_calls[0].function.name == "get_weather"
    else:  # a 135M model repeats the schema it was shown (cut off here): JSON all the same
        assert message.content.lstrip().startswith("{"), message.content


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
def test_a_tool_result_is_answered(llm: ModuleType, gateway: Gateway, provider: str) -> None:
    """The call and its result sent back (LiteLLM makes them Anthropic's tool_use and
    tool_result blocks, Ollama's tool messages): read by the model, answered."""
    function = {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    call = {"id": "call_1", "type": "function", "function": function}
    turns = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    asked = _complete(llm, gateway, provider, messages=WEATHER_QUESTION, max_tokens=1)
    reply = _complete(llm, gateway, provider, messages=turns, tools=[WEATHER], max_tokens=64)
    assert reply.usage.prompt_tokens > asked.usage.prompt_tokens + 10
    message = reply.choices[0].message
    assert message.content or message.tool_calls


def _responses(llm: ModuleType, gateway: Gateway, **request: Any) -> Any:
    defaults = {"input": CHAT, "max_output_tokens": 48, "temperature": 0}
    return llm.responses(
        model=f"openai/{MODEL}", api_base=gateway.v1, api_key=KEY, **{**defaults, **request}
    )


def _output_text(response: Any) -> str:
    return "".join(
        part.text for item in response.output if item.type == "message" for part in item.content
    )


def test_responses_invoke_and_stream(llm: ModuleType, gateway: Gateway) -> None:
    whole = _responses(llm, gateway)
    assert whole.status == "completed" and names_paris(_output_text(whole))
    kinds, deltas, final = [], [], None
    for event in _responses(llm, gateway, stream=True):
        kinds.append(event.type)  # a str enum: equal to the event's name
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert len(deltas) >= 2 and "".join(deltas) == _output_text(whole)
    assert final is not None and final.usage.output_tokens == whole.usage.output_tokens


def test_responses_schema_and_forced_tool(llm: ModuleType, gateway: Gateway) -> None:
    schema = {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}
    reply = _responses(
        llm, gateway, input=CITY_QUESTION, text={"format": schema}, max_output_tokens=64
    )
    jsonschema.validate(json.loads(_output_text(reply)), CITY)
    tool = {"type": "function", **WEATHER["function"]}
    called = _responses(
        llm,
        gateway,
        input=WEATHER_QUESTION,
        tools=[tool],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    (call,) = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), PARAMETERS)


def test_responses_are_kept_listed_and_deleted(llm: ModuleType, gateway: Gateway) -> None:
    """LiteLLM's own id (it wraps the gateway's) finds the stored response, its input
    items (``GET /v1/responses/{id}/input_items``), a follow-up, and deletes it."""
    first = _responses(llm, gateway, max_output_tokens=8)
    where = {"custom_llm_provider": "openai", "api_base": gateway.v1, "api_key": KEY}
    fetched = llm.get_responses(response_id=first.id, **where)
    assert _output_text(fetched) == _output_text(first)
    items = llm.list_input_items(response_id=first.id, order="asc", **where)
    assert [item["role"] for item in items["data"]] == ["system", "user"]
    assert items["data"][1]["content"][0]["text"] == CHAT[1]["content"]
    follow = _responses(llm, gateway, input="And Germany?", previous_response_id=first.id)
    assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert llm.delete_responses(response_id=first.id, **where).deleted
    with pytest.raises(llm.NotFoundError):
        llm.get_responses(response_id=first.id, **where)
