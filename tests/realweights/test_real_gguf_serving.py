"""The real SmolLM2 GGUF behind famous's gateway, on each llama.cpp server, through the
official ``openai`` client; and ``famous run`` as a user runs it.

Both servers get the same Q4_1 file: llama-cpp-python's ``llama_cpp.server`` and llama.cpp's
own ``llama-server`` (built by ``provision.llama_server()``, handed to the gateway as
``FAMOUS_LLAMA_SERVER`` the way the serving harness hands its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
import serving_harness
from engine_helpers import streamed
from realweights_helpers import CHAT, MODEL, QUESTION, SYSTEM, names_paris
from serving_harness import (
    SERVERS,
    Gateway,
    famous_cli,
    famous_env,
    start_gateway,
    stop_gateway,
)

from famous.runtimes.base import free_port, stop_process
from famous.store.deployments import process_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def native_llama_server(llama_server_binary: Path) -> Iterator[Path]:
    """The harness passes ``serving_harness.NATIVE`` to every gateway it starts: make it the
    provisioned binary for this module (whatever the harness found on this machine)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving_harness, "NATIVE", llama_server_binary)
        yield llama_server_binary


@pytest.fixture(scope="module", params=sorted(SERVERS))
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    smollm2_gguf: Path,
    native_llama_server: Path,
) -> Iterator[Gateway]:
    """A gateway serving the real GGUF, once per llama.cpp server."""
    home = tmp_path_factory.mktemp("famous-home")
    gw = start_gateway(
        home, "--model", f"{MODEL}={smollm2_gguf}", "--keep-alive", "-1", server=request.param
    )
    gw.server = SERVERS[request.param]
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)


def _ask(client: openai.OpenAI, **extra: object):
    request = {"model": MODEL, "messages": CHAT, "max_tokens": 48, "temperature": 0, "seed": 0}
    return client.chat.completions.create(**{**request, **extra})


def test_chat_names_paris(
    client: openai.OpenAI, gateway: Gateway, native_llama_server: Path
) -> None:
    reply = _ask(client)
    choice = reply.choices[0]
    assert names_paris(choice.message.content), choice.message.content
    # The answer is one sentence: the model ends it with <|im_end|> long before max_tokens.
    assert choice.finish_reason == "stop"
    assert 0 < reply.usage.completion_tokens < 48
    dep = next(d for d in gateway.ps() if d["name"] == MODEL)
    assert dep["server"] == gateway.server, dep
    started = [
        line for line in Path(dep["log_path"]).read_text().splitlines() if "famous starts:" in line
    ]
    assert started, dep["log_path"]
    program = started[-1].split("famous starts: ", 1)[1].split()[0]
    if gateway.server == "llama-server":  # the provisioned build, not another one on PATH
        assert Path(program) == native_llama_server
    else:
        assert Path(program) == Path(sys.executable)


def test_stream_equals_non_stream(client: openai.OpenAI) -> None:
    whole = _ask(client).choices[0]
    text, finish, chunks = streamed(_ask(client, stream=True))
    assert text == whole.message.content
    assert finish == whole.finish_reason == "stop"
    assert chunks >= 2
    assert names_paris(text)


def test_json_schema_output_validates_on_every_server(client: openai.OpenAI) -> None:
    """OpenAI's structured output (``response_format`` json_schema, strict): the answer is
    JSON the schema accepts, on llama-server and on llama_cpp.server (which reads the same
    schema under another name; the gateway translates)."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "The capital of France and its population?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": schema, "strict": True},
        },
        max_tokens=64,
        temperature=0,
    )
    answer = json.loads(reply.choices[0].message.content)
    jsonschema.validate(answer, schema)


def test_json_object_output_is_json_on_every_server(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe Paris as a JSON object."}],
        response_format={"type": "json_object"},
        max_tokens=64,
        temperature=0,
    )
    choice = reply.choices[0]
    if choice.finish_reason == "stop":  # cut off by max_tokens, the object is unfinished
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.message.content.lstrip().startswith("{")


@pytest.mark.parametrize("kind", ["chat", "completions"])
def test_include_usage_on_every_server(client: openai.OpenAI, kind: str) -> None:
    """``stream_options.include_usage``: the stream ends with OpenAI's usage chunk (no
    choices) and its counts are the engine's own for the same request unstreamed.
    llama_cpp.server sends none itself: the gateway adds it."""
    if kind == "chat":
        create, request = client.chat.completions.create, {"messages": CHAT}
    else:
        create, request = client.completions.create, {"prompt": "The capital of France is"}
    request = {**request, "model": MODEL, "max_tokens": 24, "temperature": 0, "seed": 0}
    whole = create(**request)
    events = list(create(**request, stream=True, stream_options={"include_usage": True}))
    *answer, last = events
    assert last.choices == [] and last.usage is not None
    assert all(event.usage is None for event in answer)
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == whole.usage.total_tokens
    plain = list(create(**request, stream=True))
    # the usage chunk only when asked for (llama-server's completions still put a usage on
    # their finishing chunk, which clients that did not ask ignore; it is relayed as sent)
    assert all(event.choices for event in plain)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time now", "parameters": None},
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_tool_call_is_guaranteed(client: openai.OpenAI, choice: object) -> None:
    """SmolLM2's template knows no tools: the engines alone answer plain text. Forced, the
    answer is a call whose arguments satisfy the tool's schema."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[WEATHER, TIME] if choice == "required" else [TIME, WEATHER],
        tool_choice=choice,
        max_tokens=64,
        temperature=0,
    )
    answer = reply.choices[0]
    assert answer.finish_reason == "tool_calls" and answer.message.content is None
    (call,) = answer.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    if choice != "required":
        assert call.function.name == "get_weather"
    if call.function.name == "get_weather":
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_a_streamed_forced_call_follows_openais_deltas(client: openai.OpenAI) -> None:
    """The name comes once (llama_cpp.server repeated it in every delta), then the
    arguments; the SDK's own accumulation gives back the whole call."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    names, arguments, finish, usage = [], "", None, None
    for event in stream:
        usage = event.usage or usage
        for choice in event.choices:
            for delta in choice.delta.tool_calls or []:
                if delta.function.name:
                    names.append(delta.function.name)
                arguments += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    assert usage is not None and usage.completion_tokens > 0


Answer = tuple[str, str, str, str]  # finish_reason, content, the call's name, its arguments


def _auto(client: openai.OpenAI, messages: list[dict], stream: bool) -> Answer:
    """tools with tool_choice auto, the stream gathered as the SDK's deltas arrive."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER, TIME],
        tool_choice="auto",
        max_tokens=96,
        temperature=0,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    if not stream:
        answer = reply.choices[0]
        assert reply.usage.completion_tokens > 0
        calls = answer.message.tool_calls or []
        assert len(calls) <= 1
        name, arguments = (
            (calls[0].function.name, calls[0].function.arguments) if calls else ("", "")
        )
        return answer.finish_reason, answer.message.content or "", name, arguments
    content, name, arguments, finish, usage = "", "", "", None, None
    for event in reply:
        usage = event.usage or usage
        for choice in event.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                name += delta.function.name or ""
                arguments += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert usage is not None and usage.completion_tokens > 0
    return str(finish), content, name, arguments


def _check_auto(finish: str, content: str, name: str, arguments: str) -> None:
    """A text (stop, or length when max_tokens cut it) or one call of a listed tool whose
    arguments satisfy its parameters."""
    if finish != "tool_calls":
        assert finish in ("stop", "length") and content.strip() and not name, (finish, content)
        return
    assert not content
    tool = next(t["function"] for t in (WEATHER, TIME) if t["function"]["name"] == name)
    jsonschema.validate(json.loads(arguments), tool["parameters"] or {"type": "object"})


AUTO_PROMPTS = {
    "wants the tool": "What is the weather in Paris? Use the get_weather tool.",
    "wants a text": "Write one sentence about the sea.",
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("prompt", sorted(AUTO_PROMPTS))
def test_auto_answers_a_text_or_a_valid_call(
    client: openai.OpenAI, gateway: Gateway, prompt: str, stream: bool
) -> None:
    """SmolLM2's template renders no tools: under tool_choice auto the gateway offers them
    and the model chooses; either answer has OpenAI's shape. (What it chose is printed.)"""
    messages = [{"role": "user", "content": AUTO_PROMPTS[prompt]}]
    finish, content, name, arguments = _auto(client, messages, stream)
    print(f"\n[{gateway.server}, {prompt}, {stream=}] {finish}: {content or name + arguments}")
    _check_auto(finish, content, name, arguments)


def test_auto_after_a_tool_result(client: openai.OpenAI) -> None:
    """The call and its result in the history (roles the template does not know) still
    give an answer of OpenAI's shape."""
    history = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees Celsius"},
    ]  # fmt: skip
    _check_auto(*_auto(client, history, stream=False))


def test_auto_cut_by_max_tokens_is_a_short_text_or_a_400(client: openai.OpenAI) -> None:
    """A text cut short is answered as far as it got (finish_reason length), a call cut
    short is a 400 naming max_tokens: never a call with broken arguments."""
    try:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": AUTO_PROMPTS["wants the tool"]}],
            tools=[WEATHER],
            tool_choice="auto",
            max_tokens=6,
            temperature=0,
        )
    except openai.BadRequestError as info:
        assert info.body["param"] == "max_tokens" and "raise max_tokens" in info.body["message"]
        return
    answer = reply.choices[0]
    assert answer.finish_reason == "length" and not answer.message.tool_calls


def test_none_answers_text_with_tools_in_the_history(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[
            *WEATHER_QUESTION,
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees Celsius"},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=32,
        temperature=0,
    )
    answer = reply.choices[0]
    assert answer.message.content and not answer.message.tool_calls
    assert answer.finish_reason in ("stop", "length")


def test_a_tool_result_turn_is_answered_on_every_server(client: openai.OpenAI) -> None:
    """The history OpenAI clients send after a call: the assistant's turn has
    ``content: null`` beside its tool_calls (llama_cpp.server answered that with a 500)."""
    history = [
        *WEATHER_QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]
    reply = client.chat.completions.create(
        model=MODEL, messages=history, max_tokens=16, temperature=0
    )
    assert reply.choices[0].message.content


def test_tool_choice_naming_an_unknown_tool_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=WEATHER_QUESTION,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "launch_rockets"}},
        )
    assert info.value.body["param"] == "tool_choice"


def test_server_renders_the_models_template(client: openai.OpenAI, hf_tokenizer) -> None:
    """The prompt each server built from the GGUF's template is transformers' prompt: the
    same number of tokens as ``apply_chat_template`` of the same messages."""
    prompt = hf_tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    want = hf_tokenizer(prompt, add_special_tokens=False).input_ids
    assert _ask(client, max_tokens=1).usage.prompt_tokens == len(want)


def test_greedy_answer_is_the_bare_engines(
    client: openai.OpenAI, smollm2_gguf: Path, native_llama_server: Path, tmp_path: Path
) -> None:
    """At temperature 0 famous answers what llama.cpp's own server, started by hand on the
    same file with nothing but its defaults, answers: on llama_cpp.server too, whose
    repeat_penalty default (1.1) famous replaces with llama.cpp's (1.0)."""
    port = free_port()
    log = tmp_path / "bare.log"
    with open(log, "wb") as out:
        bare = subprocess.Popen(
            [
                str(native_llama_server),
                "-m",
                str(smollm2_gguf),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--ctx-size",
                "4096",
                "--no-webui",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        direct = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0, timeout=120
        )
        expected = _bare_answer(direct, bare, log)
        assert _ask(client, max_tokens=32).choices[0].message.content == expected
    finally:
        stop_process(bare.pid, grace=5, popen=bare)


def _bare_answer(direct: openai.OpenAI, bare: subprocess.Popen, log: Path) -> str:
    import time

    deadline = time.monotonic() + 120
    while True:
        assert bare.poll() is None, log.read_text()[-2000:]
        try:
            reply = direct.chat.completions.create(
                model="any", messages=CHAT, max_tokens=32, temperature=0, seed=0
            )
            return reply.choices[0].message.content
        except (openai.APIConnectionError, openai.InternalServerError, openai.APIStatusError):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)


# ------------------------------------------------------------------------------ famous run


def _famous(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return famous_cli(Path(env["FAMOUS_HOME"]), *args, timeout=timeout, env=env)


def _pids(env: dict[str, str]) -> set[int]:
    """The gateway's and its engines' pids, as ``famous status`` reports them."""
    r = _famous(env, "status", "--format", "json", timeout=30)
    if r.returncode != 0:
        return set()
    data = json.loads(r.stdout)
    pids = {data["gateway"].get("pid")} | {d.get("pid") for d in data["deployments"]}
    return {int(p) for p in pids if p}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_famous_run_answers_paris(
    server: str, tmp_path: Path, smollm2_gguf: Path, native_llama_server: Path
) -> None:
    """``famous import`` the GGUF, then ``famous run NAME PROMPT`` in a FAMOUS_HOME of its own:
    it starts a gateway (on a free port) and the engine, prints the answer and exits; the
    gateway it left running is stopped with ``famous stop --gateway``, and nothing survives.

    ``famous run`` sends no temperature, so the server samples at its default (0.8); the
    engine's seed is fixed through the configuration's environment layer (``FAMOUS_SEED``,
    which the catalog applies to an imported model) so the answer is reproducible.
    """
    env = famous_env(tmp_path / "home", server)
    env["FAMOUS_HTTP_PORT"] = str(free_port())
    env["FAMOUS_SEED"] = "0"
    imported = _famous(env, "import", str(smollm2_gguf), "--name", MODEL, timeout=60)
    assert imported.returncode == 0, imported.stderr
    pids: set[int] = set()
    try:
        run = _famous(
            env, "run", MODEL, QUESTION, "--system", SYSTEM, "--max-tokens", "64", timeout=240
        )
        pids = _pids(env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert names_paris(run.stdout), run.stdout + run.stderr
        assert f"({SERVERS[server]})" in run.stderr, run.stderr  # "smollm2 on llamacpp (…)"
        assert len(pids) == 2, pids  # the gateway and one engine
    finally:
        pids |= _pids(env)
        stopped = _famous(env, "stop", "--gateway", timeout=90)
        survivors = [pid for pid in pids if process_alive(pid)]
        for pid in survivors:  # only processes this test started (through famous run)
            stop_process(pid, grace=5)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not survivors, f"processes outlived famous stop --gateway: {survivors}"
    assert _pids(env) == set()


# ------------------------------------------------------------------------------ speculative


def _greedy_on(adapter_config: dict, gguf: Path, log: Path) -> tuple[str, dict]:
    """The greedy answer of llama-server launched by famous with ``adapter_config``, and
    the engine's timings (which count drafted and accepted tokens)."""
    import httpx

    from famous.runtimes import get_runtime
    from famous.runtimes.base import LaunchSpec

    adapter = get_runtime(
        "llamacpp", {"server": "llama-server", "ctx-size": 1024, **adapter_config}
    )
    proc = adapter.launch(LaunchSpec(name=MODEL, model_path=gguf, log_path=log))
    try:
        proc.wait_healthy(timeout=120)
        body = {"model": MODEL, "messages": CHAT, "max_tokens": 32, "temperature": 0}
        resp = httpx.post(proc.base_url + "/v1/chat/completions", json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        return answer["choices"][0]["message"]["content"], answer.get("timings") or {}
    finally:
        proc.stop()


def test_speculative_decoding_with_a_draft_model(
    smollm2_gguf: Path, native_llama_server: Path, tmp_path: Path
) -> None:
    """``draft-model`` (here the model itself, which shares its vocabulary): llama-server
    drafts tokens and accepts them, and the greedy answer is the one without a draft."""
    path = {"llama-server-path": str(native_llama_server)}
    plain, _ = _greedy_on(path, smollm2_gguf, tmp_path / "plain.log")
    drafted, timings = _greedy_on(
        {**path, "draft-model": str(smollm2_gguf), "draft-max": 4},
        smollm2_gguf,
        tmp_path / "draft.log",
    )
    assert drafted == plain
    assert "--model-draft" in (tmp_path / "draft.log").read_text()
    assert timings.get("draft_n", 0) > 0 and timings.get("draft_n_accepted", 0) > 0, timings
