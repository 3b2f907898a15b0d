"""The web UI in a real browser against a real gateway: log in, chat with streamed tokens,
stop an answer, read an engine's reasons, pull from a (local) Hub with a live progress
bar, stop a deployment, and see the API's own message when something fails."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
import serving_harness as harness
from web_harness import HUB_REPO, SLOW_REPO, WebGateway, login, post_json

pytestmark = pytest.mark.slow


def _answer_text(page) -> str:
    return page.locator(".message.assistant .message-body").last.inner_text()


def _send(page, model: str, text: str, max_tokens: int) -> None:
    page.locator("#chat-model option", has_text=model).first.wait_for(state="attached")
    page.select_option("#chat-model", model)
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", str(max_tokens))
    page.fill("#chat-input", text)
    page.click("#chat-send")


def _growth(page, seconds: float = 90) -> list[int]:
    """Lengths of the answer as it streams, until it grew twice (or the time is up)."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len([n for n in seen if n > 0]) < 3:
        length = len(_answer_text(page)) if page.locator(".message.assistant").count() else 0
        if not seen or length != seen[-1]:
            seen.append(length)
        page.wait_for_timeout(50)
    return seen


def test_a_wrong_token_shows_the_login_error(page, web: WebGateway, expect_http_errors) -> None:
    expect_http_errors(401)
    page.goto(web.url + "/")
    page.fill("#login-token", "not-the-token")
    page.click("#login-form button[type=submit]")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert error.get_attribute("role") == "alert"
    assert "admin" in error.inner_text().lower()
    assert page.locator("#nav").is_hidden()
    assert page.evaluate("sessionStorage.getItem('famous.token')") is None


def test_the_login_form_and_the_fragment_log_in(page, web: WebGateway) -> None:
    page.goto(web.url + "/")
    page.fill("#login-token", web.token)
    page.click("#login-form button[type=submit]")
    page.locator("#nav").wait_for(state="visible")
    page.click("#logout")
    page.locator("#login-form").wait_for(state="visible")
    login(page, web)
    assert "token" not in page.url  # read once, then removed from the address
    assert page.evaluate("sessionStorage.getItem('famous.token')") == web.token


def test_a_chat_streams_and_shows_its_speed(page, web: WebGateway) -> None:
    login(page, web)
    _send(page, "smol", "Write three sentences about the sea.", 64)
    seen = _growth(page)
    # (Markdown may shorten the text a little when a ``**`` closes: compare the ends)
    assert len([n for n in seen if n > 0]) >= 2 and seen[-1] > seen[1] > 0, seen
    page.locator("#chat-send:not([disabled])").wait_for(timeout=90_000)
    stats = page.locator(".message.assistant .stats").last.inner_text()
    assert "tokens/s" in stats and "first token" in stats, stats
    assert page.locator("#messages").get_attribute("aria-live") == "polite"
    stored = json.loads(page.evaluate("localStorage.getItem('famous.conversations')"))
    kept = stored[0]["messages"]
    assert [m["role"] for m in kept] == ["user", "assistant"] and kept[1]["content"], kept
    # regenerate replaces the answer with a new one
    page.click("#chat-regenerate")
    page.locator("#chat-send:not([disabled])").wait_for(timeout=90_000)
    assert page.locator(".message.assistant").count() == 1


def test_stop_ends_a_long_answer(page, web: WebGateway) -> None:
    login(page, web)
    _send(page, "smol", "Count from 1 to 2000, one number per line.", 4000)
    seen = _growth(page)
    assert len([n for n in seen if n > 0]) >= 2, seen
    page.click("#chat-stop")
    page.locator("#chat-send:not([disabled])").wait_for()
    stopped_at = len(_answer_text(page))
    page.wait_for_timeout(1500)
    assert len(_answer_text(page)) == stopped_at
    assert "stopped" in page.locator(".message.assistant .stats").last.inner_text()


def test_a_model_shows_its_engines_and_their_reasons(page, web: WebGateway) -> None:
    login(page, web)
    page.click(".tab[data-view=models]")
    catalog = page.locator("#catalog button.link")
    catalog.first.wait_for()
    name = catalog.first.inner_text()
    catalog.first.click()
    page.locator("#model-detail-title", has_text=name).wait_for()
    engines = page.locator("#model-detail .engine")
    engines.first.wait_for()
    api = _get(web, f"/famous/api/catalog/{urllib.request.quote(name, safe='')}")
    assert engines.count() == len(api["engines"])
    first = api["engines"][0]
    card = page.locator(f'#model-detail .engine[data-engine="{first["engine"]}"]')
    assert first["verdict"] in card.inner_text()
    reasons = [r for d in first["devices"] for r in d["reasons"]] + first.get("reasons", [])
    assert reasons, first
    assert reasons[0] in card.inner_text()


def test_a_pull_from_the_hub_shows_progress_to_100_percent(page, web: WebGateway) -> None:
    login(page, web)
    page.click(".tab[data-view=hub]")
    page.fill("#hub-q", "Tiny-Chat")
    page.click("#hub-form button[type=submit]")
    pull = page.get_by_role("button", name=f"Pull {HUB_REPO}")
    pull.wait_for()
    pull.click()
    item = page.locator(f'#pulls .pull:has-text("{HUB_REPO}")').first
    item.wait_for()
    percents = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        bar = item.locator("progress")
        value, top = bar.get_attribute("value"), bar.get_attribute("max")
        if value is not None and top:
            percents.append(round(100 * float(value) / float(top)))
        if item.get_attribute("data-state") in ("done", "failed"):
            break
        page.wait_for_timeout(100)
    assert item.get_attribute("data-state") == "done", item.inner_text()
    bar = item.locator("progress")
    final = round(100 * float(bar.get_attribute("value")) / float(bar.get_attribute("max")))
    assert final == 100 and "100 %" in item.inner_text(), (percents, final)
    pulled = next(p for p in _get(web, "/famous/api/pulls")["pulls"] if p["model"] == HUB_REPO)
    assert f"installed for {pulled['engine']} ({pulled['variant']})" in item.inner_text()
    assert min(percents) < 100, percents  # it was watched on its way, not only at the end
    # the pulled model is in the catalog, installed; removing it frees its files
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#catalog button.link", has_text=HUB_REPO).click()
    remove = page.get_by_role("button", name="Remove installed files")
    remove.click()
    page.locator("#model-detail", has_text=re.compile("Removed|Not installed")).wait_for()
    listed = harness.famous_cli(web.gateway.home, "list", "--format", "json")
    assert HUB_REPO not in listed.stdout, listed.stdout


def test_a_pull_can_be_cancelled_and_resumed(page, web: WebGateway) -> None:
    login(page, web)
    page.click(".tab[data-view=hub]")
    page.fill("#hub-q", "Slow-Chat")
    page.click("#hub-form button[type=submit]")
    page.get_by_role("button", name=f"Pull {SLOW_REPO}").click()
    item = page.locator(f'#pulls .pull:has-text("{SLOW_REPO}")').first
    deadline = time.monotonic() + 30  # bytes, rate and time left, live
    while not ("/s" in item.inner_text() and "ETA" in item.inner_text()):
        assert time.monotonic() < deadline, item.inner_text()
        page.wait_for_timeout(100)
    assert float(item.locator("progress").get_attribute("value") or 0) > 0
    item.get_by_role("button", name=f"Cancel the download of {SLOW_REPO}").click()
    page.locator(f'#pulls .pull[data-state=cancelled]:has-text("{SLOW_REPO}")').wait_for()
    page.get_by_role("button", name=f"Resume the download of {SLOW_REPO}").first.click()
    done = page.locator(f'#pulls .pull[data-state=done]:has-text("{SLOW_REPO}")')
    done.first.wait_for(timeout=60_000)
    ranges = [r for _, p, r in web.hub.requests if "slow-chat" in p and r]
    assert ranges, web.hub.requests  # the second pull asked for the rest, not the whole file


def test_pin_and_unpin_an_engine(page, web: WebGateway) -> None:
    login(page, web)
    page.click(".tab[data-view=models]")
    page.locator("#catalog button.link").first.click()
    card = page.locator("#model-detail .engine.compatible").first
    engine = card.get_attribute("data-engine")
    card.get_by_role("button", name="Pin", exact=True).click()
    card = page.locator(f'#model-detail .engine[data-engine="{engine}"]')
    card.locator(".badge", has_text="pinned").wait_for()
    card.get_by_role("button", name="Unpin", exact=True).click()
    card.get_by_role("button", name="Pin", exact=True).wait_for()
    assert card.locator(".badge", has_text="pinned").count() == 0


def test_an_image_goes_as_a_data_uri_and_a_refusal_is_shown(
    page, web: WebGateway, tmp_path, expect_http_errors
) -> None:
    expect_http_errors(400)
    png = tmp_path / "dot.png"
    png.write_bytes(_PNG)
    login(page, web)
    page.set_input_files("#chat-image", str(png))
    page.locator("#attachments img").wait_for()
    sent = []
    page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and sent.append(r))
    _send(page, "tiny", "What is in this picture?", 8)
    alert = page.locator("#alert")
    alert.wait_for(state="visible", timeout=60_000)
    body = json.loads(sent[0].post_data)
    parts = body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is in this picture?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "image" in alert.inner_text().lower(), alert.inner_text()


def test_stop_a_deployment(page, web: WebGateway) -> None:
    login(page, web)
    page.click(".tab[data-view=deployments]")
    page.fill("#load-model", "tiny")
    page.click("#load-form button[type=submit]")
    stop = page.get_by_role("button", name="Stop tiny")
    stop.wait_for(timeout=60_000)
    page.get_by_role("button", name="Log of tiny").click()
    page.locator("#logs-panel").wait_for(state="visible")
    log = page.locator("#logs")
    _until(page, lambda: len(log.inner_text()) > 0)
    before = len(log.inner_text())
    # a request the engine logs arrives in the open log (polled with ``after``)
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    _post(web, "/v1/chat/completions", chat)
    _until(page, lambda: len(log.inner_text()) > before)
    stop.click()
    page.get_by_role("button", name="Load tiny").wait_for(timeout=60_000)
    assert stop.count() == 0
    states = {d["model"]: d["state"] for d in _get(web, "/famous/api/deployments")["deployments"]}
    assert states["tiny"] == "stopped", states


def test_a_failed_action_shows_the_api_message(page, web: WebGateway, expect_http_errors) -> None:
    expect_http_errors(404)
    login(page, web)
    page.click(".tab[data-view=deployments]")
    page.fill("#load-model", "no-such-model")
    page.click("#load-form button[type=submit]")
    alert = page.locator("#alert")
    alert.wait_for(state="visible")
    assert alert.get_attribute("role") == "alert"
    expected = _post_error(web, "/famous/api/load", {"model": "no-such-model"})
    assert alert.inner_text().startswith(expected), (alert.inner_text(), expected)


def test_the_markdown_renderer_escapes_html(page, web: WebGateway) -> None:
    login(page, web)
    html = page.evaluate(
        """async () => {
        const { renderMarkdown } = await import('/ui/markdown.js');
        return renderMarkdown([
          '# Title', '<img src=x onerror=alert(1)>', '**bold** and *it* and `a<b>`',
          '- one', '- two', '[ok](https://example.org/a?b=1) [bad](javascript:alert(1))',
          '```js', 'if (a < b) { "x" }', '```',
        ].join('\\n'));
      }"""
    )
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<code>a&lt;b&gt;</code>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert '<a href="https://example.org/a?b=1" rel="noopener noreferrer"' in html
    assert 'href="javascript' not in html and "[bad](javascript:alert(1))" in html
    assert (
        '<pre class="code" data-lang="js"><code>if (a &lt; b) { &quot;x&quot; }\n</code></pre>'
        in html
    )


_PNG = bytes.fromhex(  # one red pixel
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63f8cfc0f01f00050001ff89993d1d0000000049454e44ae426082"
)


def _get(web: WebGateway, path: str) -> dict:
    return harness.get_json(
        web.url + path, timeout=30, headers={"authorization": f"Bearer {web.token}"}
    )


def _until(page, condition, seconds: float = 20) -> None:
    """Poll from Python: the page's CSP forbids the string evaluation wait_for_function uses."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the page did not get there in time"
        page.wait_for_timeout(100)


def _post(web: WebGateway, path: str, body: dict) -> dict:
    return json.loads(post_json(web, path, body).read())


def _post_error(web: WebGateway, path: str, body: dict) -> str:
    try:
        post_json(web, path, body)
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())["error"]["message"]
    raise AssertionError(f"{path} did not fail")
