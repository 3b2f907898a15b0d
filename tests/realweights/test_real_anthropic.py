"""Anthropic's Messages API on the real SmolLM2 GGUF, through the official ``anthropic``
client (and LangChain's ``ChatAnthropic``) pointed at famous's gateway, on each llama.cpp
server. What a 135M model guarantees is asserted: shapes, event order, stop reasons, usage
equal to the OpenAI route's, schema-valid tool inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import jsonschema
import openai
import pytest
from realweights_helpers import CHAT, MODEL, QUESTION, SYSTEM
from serving_harness import SERVERS, serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "sk-famous-anthropic-test"
WEATHER = {
    "name": "get_weather",
    "description": "The weather now in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
USER = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module", params=sorted(SERVERS))
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[anthropic.Anthropic]:
    """The official client of a gateway with an API key serving the real GGUF, once per
    llama.cpp server (its ``base_url`` the gateway's root: the SDK adds ``/v1``)."""
    home = tmp_path_factory.mktemp("famous-home")
    with serving(home, {MODEL: smollm2_gguf}, request.param, "--api-key", KEY) as gw:
        yield anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def gateway(client: anthropic.Anthropic) -> str:
    """The gateway's root URL."""
    return str(client.base_url).rstrip("/")


def _create(client: anthropic.Anthropic, **extra: object) -> anthropic.types.Message:
    request = {"model": MODEL, "system": SYSTEM, "messages": USER, "max_tokens": 48}
    # this SDK has no sampling arguments: greedy decoding goes as an extra field
    return client.messages.create(**{**request, "extra_body": {"temperature": 0}, **extra})


def test_text_answer_with_system_and_usage_equal_to_openai_route(
    client: anthropic.Anthropic, gateway: str
) -> None:
    reply = _create(client)
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert reply.model == MODEL
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].text.strip()
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    chat = openai.OpenAI(base_url=gateway + "/v1", api_key=KEY, max_retries=0, timeout=120)
    same = chat.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=48, temperature=0)
    assert same.choices[0].message.content == reply.content[0].text
    assert reply.usage.input_tokens == same.usage.prompt_tokens
    assert reply.usage.output_tokens == same.usage.completion_tokens


def test_system_as_text_blocks_is_the_same_prompt(client: anthropic.Anthropic) -> None:
    plain = _create(client)
    blocks = _create(client, system=[{"type": "text", "text": SYSTEM}])
    assert blocks.usage.input_tokens == plain.usage.input_tokens


def test_multi_turn(client: anthropic.Anthropic) -> None:
    turns = [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello. What do you need?"}]},
        {"role": "user", "content": [{"type": "text", "text": "The capital of France, please."}]},
    ]
    one = _create(client, messages=turns[:1])
    reply = _create(client, messages=turns)
    assert reply.content[0].type == "text"
    assert reply.usage.input_tokens > one.usage.input_tokens


def test_max_tokens_ends_with_max_tokens(client: anthropic.Anthropic) -> None:
    reply = _create(client, max_tokens=3)
    assert reply.stop_reason == "max_tokens"
    assert reply.usage.output_tokens == 3


def test_a_stop_sequence_stops_and_is_named(client: anthropic.Anthropic) -> None:
    whole = _create(client).content[0].text
    words = whole.split()
    assert len(words) >= 3, whole
    stop = " " + words[2]  # a sequence the answer at temperature 0 is known to reach
    reply = _create(client, stop_sequences=["never-said-zzz", stop])
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == stop
    assert reply.content[0].text == whole[: whole.index(stop)]
    assert 0 < reply.usage.output_tokens < 48 and reply.usage.input_tokens > 0


def test_stream_concatenates_to_the_whole_answer(client: anthropic.Anthropic) -> None:
    whole = _create(client)
    request = {"model": MODEL, "system": SYSTEM, "messages": USER, "max_tokens": 48}
    with client.messages.stream(**request, extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stream_events_in_order(client: anthropic.Anthropic) -> None:
    events = list(_create(client, stream=True, max_tokens=3))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and events[0].message.usage.input_tokens > 0
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.index("content_block_start") < kinds.index("content_block_delta")
    assert kinds.index("content_block_stop") == len(kinds) - 3
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 3


def test_forced_tool_use_validates_and_its_result_is_answered(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced = {"tools": [WEATHER], "tool_choice": {"type": "any"}}
    reply = _create(client, messages=ask, max_tokens=64, **forced)
    assert reply.stop_reason == "tool_use"
    (call,) = [block for block in reply.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
    turns = [
        *ask,
        {"role": "assistant", "content": reply.content},
        {"role": "user", "content": [result]},
    ]
    answer = _create(client, messages=turns, tools=[WEATHER], tool_choice={"type": "none"})
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content and answer.content[0].type == "text"


def test_named_tool_streams_its_input(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    choice = {"type": "tool", "name": "get_weather"}
    request = {"model": MODEL, "messages": ask, "max_tokens": 64}
    with client.messages.stream(**request, tools=[WEATHER], tool_choice=choice) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    jsonschema.validate(final.content[-1].input, WEATHER["input_schema"])


def test_count_tokens_equals_the_answer_usage(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, system=SYSTEM, messages=USER)
    assert counted.input_tokens == _create(client).usage.input_tokens


def test_keys_x_api_key_bearer_and_a_wrong_one(gateway: str) -> None:
    bearer = anthropic.Anthropic(base_url=gateway, auth_token=KEY, max_retries=0)
    assert bearer.messages.create(model=MODEL, messages=USER, max_tokens=2).content
    wrong = anthropic.Anthropic(base_url=gateway, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model=MODEL, messages=USER, max_tokens=2)
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_errors_are_anthropic_shaped(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", messages=USER, max_tokens=2)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        tool_turn = [{"role": "tool", "content": "x"}]
        client.messages.create(model=MODEL, messages=tool_turn, max_tokens=2)
    assert bad.value.body["type"] == "error"
    assert "messages.0.role" in bad.value.body["error"]["message"]


def test_langchain_chat_anthropic(gateway: str) -> None:
    import langchain_anthropic as langchain  # a dev dependency: never skipped

    chat = langchain.ChatAnthropic(
        model=MODEL, base_url=gateway, api_key=KEY, max_tokens=24, temperature=0, max_retries=0
    )
    whole = chat.invoke(QUESTION)
    assert isinstance(whole.content, str) and whole.content
    streamed = "".join(str(part.content) for part in chat.stream(QUESTION))
    assert streamed == whole.content
    tools = chat.bind_tools([WEATHER], tool_choice="get_weather").bind(max_tokens=64)
    called = tools.invoke("What is the weather in Paris?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_weather"
    jsonschema.validate(called.tool_calls[0]["args"], WEATHER["input_schema"])
