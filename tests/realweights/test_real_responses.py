"""OpenAI's Responses API on the real SmolLM2 GGUF behind famous's gateway, on each llama.cpp
server, through the official ``openai`` client (``client.responses``) and LangChain's
``ChatOpenAI(use_responses_api=True)``.

What a 135M model guarantees is asserted, not wisdom: shapes, the event order, usage equal
to the chat route's, stop reasons, JSON valid under a schema, a forced call.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
import test_real_gguf_serving as chat_tests
from realweights_helpers import MODEL, QUESTION, SYSTEM
from serving_harness import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# the chat tests' fixtures: the real GGUF behind a gateway, once per llama.cpp server
native_llama_server = chat_tests.native_llama_server
gateway = chat_tests.gateway
client = chat_tests.client

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
WEATHER_QUESTION = "What is the weather in Paris?"
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def _ask(client: openai.OpenAI, **extra: object):
    request = {
        "model": MODEL,
        "instructions": SYSTEM,
        "input": QUESTION,
        "max_output_tokens": 48,
        "temperature": 0,
    }
    return client.responses.create(**{**request, **extra})


def test_a_text_answer_is_the_chat_routes(client: openai.OpenAI) -> None:
    """The same greedy answer and the same token counts as chat completions."""
    reply = _ask(client)
    assert reply.object == "response" and reply.id.startswith("resp_")
    assert reply.status == "completed" and reply.incomplete_details is None
    (item,) = reply.output
    assert item.type == "message" and item.role == "assistant"
    assert item.content[0].type == "output_text" and reply.output_text
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        max_tokens=48,
        temperature=0,
    )
    assert reply.output_text == chat.choices[0].message.content
    assert reply.usage.input_tokens == chat.usage.prompt_tokens
    assert reply.usage.output_tokens == chat.usage.completion_tokens
    total = reply.usage.input_tokens + reply.usage.output_tokens
    assert reply.usage.total_tokens == total


def test_instructions_become_the_system_message(client: openai.OpenAI) -> None:
    bare = _ask(client, instructions=None, max_output_tokens=4)
    told = _ask(client, instructions="Answer in French. " * 8, max_output_tokens=4)
    assert told.usage.input_tokens > bare.usage.input_tokens
    assert told.instructions == "Answer in French. " * 8


def test_a_json_schema_format_validates(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model=MODEL,
        input="The capital of France and its population?",
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
        max_output_tokens=64,
        temperature=0,
    )
    assert reply.status == "completed", reply
    jsonschema.validate(json.loads(reply.output_text), CITY)
    assert reply.text.format.type == "json_schema"


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    reply = _ask(client, max_output_tokens=3)
    assert reply.status == "incomplete"
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert 0 < reply.usage.output_tokens <= 3
    assert reply.output[0].status == "incomplete"


def test_a_required_tool_answers_a_function_call(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model=MODEL,
        input=WEATHER_QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=64,
        temperature=0,
    )
    assert reply.status == "completed"
    (call,) = reply.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    # the tool's result, sent back as the next turn, is answered with a text
    follow = client.responses.create(
        model=MODEL,
        previous_response_id=reply.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        max_output_tokens=16,
        temperature=0,
    )
    assert follow.output[0].type == "message"
    asked = client.responses.create(model=MODEL, input=WEATHER_QUESTION, max_output_tokens=1)
    # the question, the call and its output: more than the question alone
    assert follow.usage.input_tokens > asked.usage.input_tokens + 8


def test_a_stream_follows_the_documented_events(client: openai.OpenAI) -> None:
    """Events in order, numbered; the deltas make the final text, which is the non-streamed
    one; usage as the non-streamed answer counts it."""
    whole = _ask(client)
    kinds, deltas, numbers, final = [], [], [], None
    for event in _ask(client, stream=True):
        numbers.append(event.sequence_number)
        if not kinds or kinds[-1] != event.type:
            kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds == STREAM_ORDER
    assert numbers == list(range(len(numbers)))
    assert len(deltas) >= 2
    assert final is not None and "".join(deltas) == final.output_text == whole.output_text
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_the_sdks_stream_helper_gathers_the_answer(client: openai.OpenAI) -> None:
    request = {"model": MODEL, "instructions": SYSTEM, "input": QUESTION}
    with client.responses.stream(**request, max_output_tokens=48, temperature=0) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == text
    assert client.responses.retrieve(final.id).output_text == text


def test_a_streamed_call_sends_its_arguments(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model=MODEL,
        input=WEATHER_QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
        temperature=0,
        stream=True,
    )
    kinds, arguments, done = [], "", None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        if event.type == "response.function_call_arguments.done":
            done = event.arguments
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_item.done" in kinds
    assert done == arguments
    jsonschema.validate(json.loads(arguments), WEATHER["parameters"])


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = _ask(client, max_output_tokens=16)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input="And the capital of Germany?",
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    # the first question, its answer and the second question: more than the first prompt
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_get_delete_and_unknown_ids(client: openai.OpenAI) -> None:
    reply = _ask(client, max_output_tokens=4, metadata={"case": "get"})
    fetched = client.responses.retrieve(reply.id)
    assert fetched.id == reply.id and fetched.output_text == reply.output_text
    assert fetched.metadata == {"case": "get"}
    client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError) as unknown:
        _ask(client, previous_response_id=reply.id)
    assert unknown.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_unknown")
    unstored = _ask(client, max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_langchain_invokes_and_streams(gateway: Gateway) -> None:
    import langchain_openai as langchain  # a dev dependency: never skipped

    chat = langchain.ChatOpenAI(
        model=MODEL,
        base_url=gateway.v1,
        api_key="unused",
        use_responses_api=True,
        temperature=0,
        max_tokens=24,
        max_retries=0,
    )
    messages = [("system", SYSTEM), ("human", QUESTION)]
    whole = chat.invoke(messages)
    assert whole.text and whole.usage_metadata["input_tokens"] > 0
    pieces = [chunk.text for chunk in chat.stream(messages)]
    assert len([p for p in pieces if p]) >= 2
    assert "".join(pieces) == whole.text


def test_input_items_list_the_conversation(client: openai.OpenAI) -> None:
    """``client.responses.input_items.list``: what the second answer was given (the first
    question, its answer, the second question, the call and its output), newest first by
    default, a page at a time (the SDK's cursor follows ``after``); hostile queries 400."""
    first = _ask(client, max_output_tokens=8)
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather"}
    turn = [
        {"role": "user", "content": WEATHER_QUESTION},
        {**call, "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, input=turn, max_output_tokens=8
    )
    listed = client.responses.input_items.list(second.id, order="asc")
    kinds = [item.type for item in listed.data]
    assert kinds == ["message", "message", "message", "function_call", "function_call_output"]
    assert listed.data[0].content[0].text == QUESTION
    assert listed.data[1].id == first.output[0].id and listed.data[1].role == "assistant"
    assert listed.data[3].name == "get_weather" and listed.data[4].output == "sunny"
    assert listed.has_more is False and listed.last_id == listed.data[-1].id
    newest = client.responses.input_items.list(second.id)
    assert [item.id for item in newest.data] == [item.id for item in reversed(listed.data)]
    paged = client.responses.input_items.list(second.id, limit=2, order="asc")
    assert len(paged.data) == 2 and paged.has_more
    assert [item.id for item in paged] == [item.id for item in listed.data]  # every page
    assert len(client.responses.input_items.list(first.id).data) == 1
    for query, param in [
        ({"limit": 0}, "limit"),
        ({"limit": 10**9}, "limit"),
        ({"extra_query": {"limit": "abc"}}, "limit"),
        ({"after": "msg_unknown"}, "after"),
        ({"extra_query": {"order": "random"}}, "order"),
    ]:
        with pytest.raises(openai.BadRequestError) as bad:
            client.responses.input_items.list(second.id, **query)
        assert bad.value.body["param"] == param
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(second.id)
