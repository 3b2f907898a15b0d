"""Every section of the UI at desktop (1280x800) and phone (375x740) width, light and
dark, written to ``build/screenshots/`` for a person to look at; each page must load its
data without an error, and no page may be wider than the phone's screen."""

from __future__ import annotations

import json

import pytest
from web_harness import DESKTOP, PHONE, WebGateway, login, post_json, screenshot

pytestmark = pytest.mark.slow

ANSWER = """Here is how:

1. Open the **Models** section.
2. Pick an engine, then *Pull*.

```python
print("hello")
```

See [the docs](https://example.org/docs) or run `famous ui`."""
SAMPLE = json.dumps(
    [
        {
            "id": "1",
            "title": "How do I pull a model?",
            "model": "smol",
            "messages": [
                {"role": "user", "content": "How do I pull a model?"},
                {
                    "role": "assistant",
                    "model": "smol",
                    "content": ANSWER,
                    "stats": {"ttft": 0.21, "tokens": 48, "tps": 61.5, "stopped": False},
                },
            ],
        }
    ]
)
VIEWS = ["chat", "models", "deployments", "hub", "machine"]
READY = {
    "chat": "#chat-model option",
    "models": "#catalog table",
    "deployments": "#deployments > *",
    "hub": "#hub-form",
    "machine": "#machine table",
}


@pytest.mark.parametrize(
    ("size", "viewport", "scheme"),
    [
        ("desktop", DESKTOP, "light"),
        ("desktop", DESKTOP, "dark"),
        ("phone", PHONE, "light"),
        ("phone", PHONE, "dark"),
    ],
)
def test_screenshots_of_every_section(open_page, web: WebGateway, size, viewport, scheme) -> None:
    _load(web, "tiny")  # an engine running, for the deployments page
    page = open_page(viewport, scheme)
    page.goto(web.url + "/")
    page.locator("#login-form").wait_for(state="visible")
    screenshot(page, f"login-{size}-{scheme}")
    login(page, web)
    page.evaluate("(c) => localStorage.setItem('famous.conversations', c)", SAMPLE)
    page.reload()
    page.locator("#nav").wait_for(state="visible")
    assert page.evaluate("document.documentElement.dataset.theme") == scheme
    for view in VIEWS:
        tab = page.locator(f".tab[data-view={view}]")
        tab.click()
        assert tab.get_attribute("aria-current") == "page"
        page.locator(READY[view]).first.wait_for(state="attached")
        if view == "hub":
            page.fill("#hub-q", "Chat")
            page.click("#hub-form button[type=submit]")
            page.locator("#hub-results table").wait_for()
        if view == "models":
            page.locator("#catalog button.link").first.click()
            page.locator("#model-detail .engine").first.wait_for()
        page.wait_for_timeout(150)
        assert page.locator("#alert").is_hidden(), page.locator("#alert").inner_text()
        screenshot(page, f"{view}-{size}-{scheme}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{view} is {width} px wide at {viewport['width']}"


def _load(web: WebGateway, model: str) -> None:
    assert (
        json.loads(post_json(web, "/famous/api/load", {"model": model}).read())["state"] == "ready"
    )


def test_the_theme_toggle_switches_and_is_remembered(open_page, web: WebGateway) -> None:
    page = open_page(DESKTOP, "light")
    login(page, web)
    toggle = page.locator("#theme-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    page.reload()
    page.locator("#nav").wait_for(state="visible")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.keyboard.press("Tab")  # the skip link takes the first focus, visibly
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert page.evaluate("document.activeElement.className") == "skip" and outline != "none"
