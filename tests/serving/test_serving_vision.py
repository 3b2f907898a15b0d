"""Vision on llama.cpp: a GGUF model with its projector (``mmproj``) and image content parts.

The projector is a random-weight LLaVA ``mlp`` one written by the tests (``write_mmproj``),
so what the model answers about an image means nothing. What is certain and asserted: the
real llama-server starts with ``--mmproj``, answers a chat request with an image, and the
image costs exactly its patches in prompt tokens (16 for 32×32 pixels in 8-pixel patches),
whether it came as a data URI or from a URL the gateway fetched. Malformed parts, images to
a model without a projector and images to llama-cpp-python's server are refused with a 400
naming the field or the engine, in-process, before any engine sees them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serving_harness import NATIVE, Gateway, famous_cli, famous_env, hub_server_module, serving
from tiny_gguf import write_llama, write_mmproj

from famous.api_errors import APIError
from famous.runtimes.base import LaunchSpec
from famous.runtimes.llamacpp import LlamaCppPythonServer, LlamaServer
from famous.serve import images
from famous.serve.app import create_app
from famous.serve.models import ModelRegistry, ModelSpec
from famous.serve.scheduler import Scheduler

IMAGE_TOKENS = 16  # (32 / 8) ** 2 patches of write_mmproj's defaults


def tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A real RGB PNG (a colour gradient) made with zlib: no imaging library needed."""
    rows = b"".join(
        b"\0" + b"".join(bytes((x * 16 % 256, y * 16 % 256, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def _image_message(url: str, text: str = "what is in this picture") -> list[dict[str, Any]]:
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model folder as famous pull leaves it (the GGUF, its projector beside it), and
    the same text model alone."""
    seeing = tmp_path_factory.mktemp("vision")
    blind = tmp_path_factory.mktemp("blind")
    model = write_llama(seeing / "tiny-llama.gguf")
    write_mmproj(seeing / "mmproj-tiny-f32.gguf", text_embd=64)
    plain = blind / "tiny-llama.gguf"
    plain.write_bytes(model.read_bytes())
    return {"vision": model, "plain": plain}


# -- the launch -------------------------------------------------------------------------------


def test_llama_server_gets_the_projector_beside_the_gguf(
    vision_models: dict[str, Path], tmp_path: Path
) -> None:
    vision = LaunchSpec(name="v", model_path=vision_models["vision"])
    argv = LlamaServer({}, Path("/bin/true")).command(vision, 9)
    projector = vision_models["vision"].parent / "mmproj-tiny-f32.gguf"
    assert argv[argv.index("--mmproj") + 1] == str(projector)
    assert "images" not in LlamaServer({}, Path("/bin/true")).limits(vision)
    plain = LaunchSpec(name="p", model_path=vision_models["plain"])
    assert "--mmproj" not in LlamaServer({}, Path("/bin/true")).command(plain, 9)
    assert "no vision projector" in LlamaServer({}, Path("/bin/true")).limits(plain)["images"]
    off = LlamaServer({"mmproj": "none"}, Path("/bin/true"))
    assert "--mmproj" not in off.command(vision, 9) and "images" in off.limits(vision)
    named = LlamaServer({"mmproj": str(projector)}, Path("/bin/true")).command(plain, 9)
    assert named[named.index("--mmproj") + 1] == str(projector)
    with pytest.raises(Exception, match=r"mmproj .* is not a file"):
        LlamaServer({"mmproj": str(tmp_path / "gone.gguf")}, Path("/bin/true")).command(plain, 9)


def test_the_memory_estimate_counts_the_projector(vision_models: dict[str, Path]) -> None:
    from famous.serve.models import estimate_memory

    projector = vision_models["vision"].parent / "mmproj-tiny-f32.gguf"
    seeing = estimate_memory(vision_models["vision"])
    blind = estimate_memory(vision_models["plain"])
    assert seeing is not None and blind is not None
    assert seeing - blind == projector.stat().st_size


def test_mmproj_is_a_path_no_request_sets_it() -> None:
    with pytest.raises(ValueError, match=r"configuration\.mmproj can only be set"):
        LlamaServer.request_configuration({"mmproj": "/etc/passwd"})


def test_llama_cpp_python_refuses_images_naming_llama_server(
    vision_models: dict[str, Path],
) -> None:
    spec = LaunchSpec(name="v", model_path=vision_models["vision"])
    assert "--mmproj" not in " ".join(LlamaCppPythonServer().command(spec, 9))
    assert "llama-server" in LlamaCppPythonServer().limits(spec)["images"]


# -- checks before any engine -----------------------------------------------------------------


def _posted(model: Path, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Requests to a gateway that has ``model`` registered but never starts it."""
    spec = ModelSpec(name="v", path=model)
    app = create_app(Scheduler(ModelRegistry([spec], use_store=False), record=False))

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [await http.post("/v1/chat/completions", json=b) for b in bodies]

    return asyncio.run(go())


URL = "messages[0].content[1].image_url.url"
MALFORMED = [
    ("data:image/png;base64,%%%notbase64", URL, "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"plain text").decode(), URL, "no PNG"),
    ("data:text/plain;base64," + base64.b64encode(PNG).decode(), URL, "text/plain"),
    ("data:image/png," + PNG.hex(), URL, "base64 data URI"),
    ("file:///etc/passwd", URL, "not file:"),
    ("ftp://example.com/cat.png", URL, "not ftp:"),
]


@pytest.mark.parametrize(("url", "param", "says"), MALFORMED)
def test_malformed_image_parts_get_a_400_naming_the_field(
    vision_models: dict[str, Path], url: str, param: str, says: str
) -> None:
    body = {"model": "v", "max_tokens": 4, "messages": _image_message(url)}
    (resp,) = _posted(vision_models["vision"], [body])
    error = resp.json()["error"]
    assert resp.status_code == 400, resp.text
    assert error["param"] == param and param in error["message"] and says in error["message"]


def test_malformed_parts_name_their_field(vision_models: dict[str, Path]) -> None:
    cases = [
        ([{"type": "text", "text": "a"}, {"type": "image_url"}], "messages[0].content[1]"),
        ([{"type": "image_url", "image_url": {"url": 5}}], "messages[0].content[0]"),
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        (["hello"], "messages[0].content[0]"),
    ]
    bodies = [{"model": "v", "messages": [{"role": "user", "content": c}]} for c, _ in cases]
    for resp, (_, param) in zip(_posted(vision_models["vision"], bodies), cases, strict=True):
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param, resp.text


def test_an_oversized_data_uri_is_refused(
    vision_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(PNG) - 1)
    body = {"model": "v", "messages": _image_message(DATA_URI)}
    (resp,) = _posted(vision_models["vision"], [body])
    assert resp.status_code == 400 and "MiB" in resp.json()["error"]["message"]


# -- the gateway fetches URLs ----------------------------------------------------------------


class _Images(BaseHTTPRequestHandler):
    """``/cat.png`` the PNG (``/slow.png`` after 2 s); ``/text`` and ``/fake.png`` no image;
    ``/to-file`` and ``/to-cat`` redirects; ``/loop`` redirects to itself."""

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(2)
        routes = {
            "/slow.png": (200, {"Content-Type": "image/png"}, PNG),
            "/cat.png": (200, {"Content-Type": "image/png"}, PNG),
            "/text": (200, {"Content-Type": "text/html"}, b"<html></html>"),
            "/fake.png": (200, {"Content-Type": "image/png"}, b"<html></html>"),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/to-cat": (302, {"Location": "/cat.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fetch(url: str, allow_private: bool = True) -> str:
    return asyncio.run(images.fetch_image(url, (0, 1), allow_private))


def test_fetched_images_become_data_uris(image_server: str) -> None:
    assert _fetch(image_server + "/cat.png") == DATA_URI
    assert _fetch(image_server + "/to-cat") == DATA_URI  # a redirect within http(s)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/text", "text/html"),
        ("/fake.png", "no PNG"),
        ("/to-file", "only http and https"),
        ("/loop", "redirects"),
        ("/missing.png", "HTTP 404"),
    ],
)
def test_unsafe_or_bad_fetches_are_refused(image_server: str, path: str, says: str) -> None:
    with pytest.raises(APIError) as info:
        _fetch(image_server + path)
    assert info.value.status == 400 and says in info.value.message, info.value.message
    assert URL in info.value.message


def test_a_gateway_reachable_from_others_fetches_no_private_address(image_server: str) -> None:
    with pytest.raises(APIError, match="private address"):
        _fetch(image_server + "/cat.png", allow_private=False)
    with pytest.raises(APIError, match="credentials"):
        _fetch(image_server.replace("//", "//user:pw@") + "/cat.png")


def test_a_slow_fetch_times_out(image_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "FETCH_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(APIError, match=r"no image within 0\.5 s"):
        _fetch(image_server + "/slow.png")
    assert time.monotonic() - started < 1.5


def test_an_image_over_the_cap_is_not_read(
    image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(PNG) - 1)
    with pytest.raises(APIError, match="MiB"):
        _fetch(image_server + "/cat.png")


# -- the real llama-server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def vision_gateway(
    tmp_path_factory: pytest.TempPathFactory, vision_models: dict[str, Path]
) -> Iterator[Gateway]:
    assert NATIVE.is_file()
    models = {"seeing": vision_models["vision"], "blind": vision_models["plain"]}
    with serving(tmp_path_factory.mktemp("famous-home"), models) as gw:
        yield gw


def _client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=120)


def _prompt_tokens(client: openai.OpenAI, messages: list[dict[str, Any]]) -> int:
    answer = client.chat.completions.create(
        model="seeing", messages=messages, max_tokens=4, temperature=0
    )
    assert answer.choices[0].message.content, answer
    assert answer.usage is not None
    return answer.usage.prompt_tokens


@pytest.mark.slow
def test_llama_server_reads_an_image_through_the_gateway(
    vision_gateway: Gateway, image_server: str, vision_models: dict[str, Path]
) -> None:
    client = _client(vision_gateway)
    text_only = [{"role": "user", "content": "what is in this picture"}]
    without = _prompt_tokens(client, text_only)
    with_data_uri = _prompt_tokens(client, _image_message(DATA_URI))
    assert with_data_uri == without + IMAGE_TOKENS
    with_url = _prompt_tokens(client, _image_message(image_server + "/cat.png"))
    assert with_url == with_data_uri
    stream = client.chat.completions.create(
        model="seeing", messages=_image_message(DATA_URI), max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    log = next(vision_gateway.home.rglob("seeing.log")).read_text(errors="replace")
    projector = vision_models["vision"].parent / "mmproj-tiny-f32.gguf"
    assert f"--mmproj {projector}" in log  # famous's launch line
    assert "loaded multimodal model" in log  # llama-server's own word that it loaded it


@pytest.mark.slow
def test_images_to_a_model_without_projector_get_a_400(vision_gateway: Gateway) -> None:
    client = _client(vision_gateway)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="blind", messages=_image_message(DATA_URI), max_tokens=4
        )
    assert "no vision projector" in str(info.value)
    text = client.chat.completions.create(
        model="blind", messages=[{"role": "user", "content": "hello"}], max_tokens=2
    )
    assert text.choices[0].message.content is not None


@pytest.mark.slow
def test_images_to_llama_cpp_python_get_a_400_naming_it(
    tmp_path: Path, vision_models: dict[str, Path]
) -> None:
    models = {"seeing": vision_models["vision"]}
    with (
        serving(tmp_path / "home", models, server="llama-cpp-python") as gw,
        pytest.raises(openai.BadRequestError) as info,
    ):
        _client(gw).chat.completions.create(
            model="seeing", messages=_image_message(DATA_URI), max_tokens=4
        )
    assert "llama_cpp.server" in str(info.value) and "llama-server" in str(info.value)


@pytest.mark.slow
def test_a_vision_repo_pulled_from_the_hub_reads_images(
    tmp_path: Path, vision_models: dict[str, Path]
) -> None:
    """``famous pull`` of a repo with a projector, then the gateway serves the pulled model
    on llama-server with it: the image costs its patches, as with the files side by side."""
    hub = hub_server_module()
    server = hub.HubServer().start()
    try:
        projector = vision_models["vision"].parent / "mmproj-tiny-f32.gguf"
        files = {"tiny-q8_0.gguf": vision_models["vision"], "mmproj-tiny-f32.gguf": projector}
        server.add_repo("org/Tiny-Vision-GGUF", files)
        home = tmp_path / "home"
        env = {**famous_env(home, "llama-server"), **hub.environment(server)}
        env.pop("HF_TOKEN", None)
        pulled = famous_cli(home, "pull", "org/Tiny-Vision-GGUF", timeout=120, env=env)
        assert pulled.returncode == 0, pulled.stderr
    finally:
        server.stop()
    with serving(home, {}) as gw:
        client = _client(gw)
        asked = {"model": "org/Tiny-Vision-GGUF", "max_tokens": 4, "temperature": 0}
        text = client.chat.completions.create(
            messages=[{"role": "user", "content": "what is in this picture"}], **asked
        )
        seen = client.chat.completions.create(messages=_image_message(DATA_URI), **asked)
    assert text.usage is not None and seen.usage is not None
    assert seen.usage.prompt_tokens == text.usage.prompt_tokens + IMAGE_TOKENS
