"""The web UI tests' harness: a real gateway (the serving harness, llama-server, a tiny
random Llama and the real SmolLM2), a Hub-protocol server it pulls from, and Debian's
Chromium driven by playwright's sync API.

Every page a test opens records its console messages and page errors; a test that leaves
one fails (``page`` fixture), except the browser's own line for an HTTP error status the
test provoked on purpose and declared (``expect_http_errors``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERVING = HERE.parent / "serving"
if str(SERVING) not in sys.path:
    sys.path.insert(0, str(SERVING))  # the gateway harness and the tiny GGUF writer

import serving_harness as harness  # noqa: E402
from tiny_gguf import write_llama  # noqa: E402

from provision import chromium, smollm2_gguf  # noqa: E402

SCREENSHOTS = HERE.parents[1] / "build" / "screenshots"
HUB_REPO = "org/Tiny-Chat-GGUF"
SLOW_REPO = "org/Slow-Chat-GGUF"  # throttled harder: a pull to cancel and resume
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@dataclass
class WebGateway:
    gateway: harness.Gateway
    hub: object

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return (self.gateway.home / "admin-token").read_text().strip()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebGateway]:
    """One gateway for a test module: ``tiny`` (random weights, fast) and ``smol`` (the
    real SmolLM2, slow enough on a CPU to watch an answer grow), loaded on demand; its Hub
    is a local server holding one tiny GGUF repo, throttled so that a pull takes seconds."""
    folder = tmp_path_factory.mktemp("web-models")
    tiny = write_llama(folder / "tiny-llama.gguf")
    hub = harness.hub_server_module().HubServer().start()
    hub.add_repo(HUB_REPO, {"tiny-chat-q8_0.gguf": tiny, "README.md": b"# tiny chat\n"})
    hub.add_repo(SLOW_REPO, {"slow-chat-q8_0.gguf": tiny, "README.md": b"# slow chat\n"})
    hub.faults.rate["tiny-chat-q8_0.gguf"] = max(tiny.stat().st_size // 3, 1)
    hub.faults.rate["slow-chat-q8_0.gguf"] = max(tiny.stat().st_size // 20, 1)
    env = harness.hub_server_module().environment(hub)
    home = tmp_path_factory.mktemp("web-home")
    args = ["--model", f"tiny={tiny}", "--model", f"smol={smollm2_gguf()}", "--keep-alive", "-1"]
    try:
        with environment(env):
            gw = harness.start_gateway(home, *args, server="llama-server")
        try:
            yield WebGateway(gw, hub)
        finally:
            harness.stop_gateway(gw)
    finally:
        hub.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Console:
    """What the page said on its console and the errors it threw."""

    messages: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)
    expected_texts: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        allowed = re.compile(
            r"Failed to load resource: the server responded with a status of (\d+)"
        )
        found = []
        for line in self.messages:
            match = allowed.search(line)
            if match and int(match.group(1)) in self.expected_statuses:
                continue
            if any(text in line for text in self.expected_texts):
                continue
            found.append(line)
        return found


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def expect_http_errors(console: Console):
    """Declare the HTTP error statuses this test provokes on purpose (the browser logs a
    line for each failed fetch; that line, and only for these statuses, is not a failure)."""

    def declare(*statuses: int) -> None:
        console.expected_statuses.update(statuses)

    return declare


def _open_page(browser: object, console: Console, viewport: dict[str, int], scheme: str):
    context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[attr-defined]
    page = context.new_page()
    page.on(
        "console",
        lambda m: (
            m.type in ("error", "warning")
            and console.messages.append(f"console {m.type}: {m.text}")
        ),
    )
    page.on("pageerror", lambda e: console.messages.append(f"page error: {e}"))
    page.set_default_timeout(20_000)
    return context, page


@pytest.fixture
def page(browser: object, console: Console) -> Iterator[object]:
    """A desktop-sized page; the test fails if the page logged an error or a warning."""
    context, opened = _open_page(browser, console, DESKTOP, "light")
    try:
        yield opened
    finally:
        context.close()
    assert not console.problems(), "the page logged:\n" + "\n".join(console.problems())


@pytest.fixture
def open_page(browser: object, console: Console) -> Iterator[object]:
    """Open more pages (other sizes, the dark scheme); each is checked like ``page``."""
    contexts = []

    def make(viewport: dict[str, int] = DESKTOP, scheme: str = "light"):
        context, opened = _open_page(browser, console, viewport, scheme)
        contexts.append(context)
        return opened

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    assert not console.problems(), "the page logged:\n" + "\n".join(console.problems())


def post_json(web: WebGateway, path: str, body: dict, timeout: float = 120):
    """POST ``body`` with the admin token (no proxy); the open answer (HTTPError on 4xx)."""
    request = urllib.request.Request(
        web.url + path,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {web.token}", "content-type": "application/json"},
    )
    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        request, timeout=timeout
    )


def login(page: object, web: WebGateway) -> None:
    """Open the UI the way ``famous ui`` does: the token in the fragment."""
    page.goto(f"{web.url}/#token={web.token}")  # type: ignore[attr-defined]
    page.locator("#nav").wait_for(state="visible")  # type: ignore[attr-defined]


def screenshot(page: object, name: str) -> Path:
    """The whole page, and what the first screen shows (``-top``: a phone's long page
    shrinks to nothing when viewed whole)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    page.screenshot(path=str(SCREENSHOTS / f"{name}-top.png"))  # type: ignore[attr-defined]
    return path
