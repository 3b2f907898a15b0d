"""The real SmolLM2 GGUF behind the gateway's Ollama API, on each llama.cpp server, through
the official ``ollama`` client and LangChain's ``ChatOllama``: the streamed pieces make the
whole answer, the counts are the OpenAI route's, a JSON schema holds."""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import pytest
import test_real_gguf_serving as gguf_serving
from realweights_helpers import CHAT, MODEL
from serving_harness import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
# the same gateways as the OpenAI tests: the real GGUF, once per llama.cpp server
gateway = gguf_serving.gateway
native_llama_server = gguf_serving.native_llama_server
GREEDY = {"temperature": 0, "seed": 0, "num_predict": 32}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> ollama.Client:
    return ollama.Client(host=gateway.url, timeout=120)


def test_stream_pieces_make_the_answer_and_counts_match_openai(
    client: ollama.Client, gateway: Gateway
) -> None:
    whole = client.chat(model=f"{MODEL}:latest", messages=CHAT, options=GREEDY)
    pieces = list(client.chat(model=MODEL, messages=CHAT, options=GREEDY, stream=True))
    assert whole.message.content and len(pieces) > 2
    assert "".join(p.message.content for p in pieces) == whole.message.content
    body = {"model": MODEL, "messages": CHAT, "max_tokens": 32, "temperature": 0, "seed": 0}
    openai = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=120).json()
    assert openai["choices"][0]["message"]["content"] == whole.message.content
    assert (
        openai["usage"]["prompt_tokens"] == whole.prompt_eval_count == pieces[-1].prompt_eval_count
    )
    assert openai["usage"]["completion_tokens"] == whole.eval_count
    assert (
        whole.done_reason
        == {"stop": "stop", "length": "length"}[openai["choices"][0]["finish_reason"]]
    )


def test_format_schema_and_json(client: ollama.Client) -> None:
    options = {"temperature": 0, "seed": 0, "num_predict": 64}
    question = [{"role": "user", "content": "The capital of France and its population?"}]
    reply = client.chat(model=MODEL, messages=question, format=SCHEMA, options=options)
    if reply.done_reason == "stop":
        jsonschema.validate(json.loads(reply.message.content), SCHEMA)
    generated = client.generate(
        model=MODEL, prompt="The capital of France, as JSON", format="json", options=options
    )
    assert generated.done and generated.response.lstrip().startswith("{")


def test_show_and_tags_describe_the_gguf(client: ollama.Client) -> None:
    tag = next(m for m in client.list().models if m.model == f"{MODEL}:latest")
    assert tag.details.family == "llama" and tag.details.quantization_level == "Q4_1"
    shown = client.show(MODEL)
    assert shown.template and shown.modelinfo["llama.context_length"] > 0


def test_langchain_chat_ollama_invoke_and_stream(gateway: Gateway) -> None:
    from langchain_ollama import ChatOllama as chat_ollama  # a dev dependency

    llm = chat_ollama(model=MODEL, base_url=gateway.url, temperature=0, seed=0, num_predict=24)
    whole = llm.invoke("What is the capital of France?")
    assert isinstance(whole.content, str) and whole.content
    pieces = [chunk.content for chunk in llm.stream("What is the capital of France?")]
    assert len(pieces) > 1 and "".join(pieces) == whole.content
