"""The UI's files as the gateway serves them: the headers that keep injected content from
running, only the shipped files (no path reaches outside their folder), the guard's Host
check, and a page with no inline code (the CSP would block it, so it must not need any)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import serving_harness as harness
from web_harness import login

from famous.serve.routes.web import CONTENT_SECURITY_POLICY

WEB = Path(__file__).resolve().parents[2] / "src" / "famous" / "serve" / "web"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Gateway]:
    gw = harness.start_gateway(tmp_path_factory.mktemp("web-security"))
    try:
        yield gw
    finally:
        harness.stop_gateway(gw)


def raw_get(gw: harness.Gateway, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{gw.port}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_index_and_files_have_their_types_and_security_headers(gateway: harness.Gateway) -> None:
    expected = {
        "/": "text/html",
        "/ui/main.js": "text/javascript",
        "/ui/app.css": "text/css",
        "/ui/icon.svg": "image/svg+xml",
    }
    for path, media in expected.items():
        status, headers, body = raw_get(gateway, path)
        assert status == 200, (path, body[:200])
        assert headers["content-type"].startswith(media), (path, headers)
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-cache"
    _, _, index = raw_get(gateway, "/")
    assert index == (WEB / "index.html").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../pyproject.toml",
        "/ui/..%2Fpyproject.toml",
        "/ui/%2e%2e/pyproject.toml",
        "/ui/%2E%2E%2F%2E%2E%2F%2E%2E%2Fpyproject.toml",
        "/ui/..%5C..%5Cpyproject.toml",
        "/ui/%252e%252e%252fpyproject.toml",
        "/ui/../../../../../../etc/passwd",
        "/ui//etc/passwd",
        "/ui/%2Fetc%2Fpasswd",
        "/ui/../routes/web.py",
        "/ui/..%2F__init__.py",
        "/ui/",
        "/ui/missing.js",
        "/ui/index.html%00.js",
    ],
)
def test_paths_outside_the_ui_folder_are_404(gateway: harness.Gateway, path: str) -> None:
    status, _, body = raw_get(gateway, path)
    assert status == 404, (path, status, body[:200])
    assert b"[project]" not in body and b"root:" not in body and b"import" not in body


def test_a_foreign_host_is_refused(gateway: harness.Gateway) -> None:
    for path in ("/", "/ui/main.js"):
        status, _, body = raw_get(gateway, path, host="evil.example:8324")
        assert status == 403, body
        assert b"host_not_allowed" in body


class _Inline(HTMLParser):
    """Collects what the CSP would block: inline scripts, style attributes, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name in names:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.problems.append("<script> without src")
            else:
                self.scripts.append(str(names["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")


def test_index_has_no_inline_code(gateway: harness.Gateway) -> None:
    _, _, body = raw_get(gateway, "/")
    parser = _Inline()
    parser.feed(body.decode())
    assert parser.problems == []
    assert parser.scripts == ["/ui/main.js"]
    for script in WEB.glob("*.js"):  # the modules build the page with DOM calls, no eval
        text = script.read_text()
        assert "eval(" not in text and "new Function" not in text, script.name


def test_the_browser_refuses_injected_inline_code(page, web, console) -> None:
    """The CSP is enforced: a script element with inline text (what an HTML injection
    would add) and an inline handler do not run, and say so on the console."""
    console.expected_texts.append("Content Security Policy")
    page.goto(web.url + "/")
    page.locator("#login-form").wait_for(state="visible")
    ran = page.evaluate(
        """() => new Promise((done) => {
          const s = document.createElement('script');
          s.textContent = 'window.__injected = true';
          document.body.append(s);
          const img = document.createElement('img');
          img.setAttribute('onerror', 'window.__handler = true');
          img.src = 'data:,not-an-image';
          document.body.append(img);
          setTimeout(() => done([window.__injected === true, window.__handler === true]), 300);
        })"""
    )
    assert ran == [False, False]
    assert any("Content Security Policy" in m for m in console.messages), console.messages


def test_the_sections_work_from_the_keyboard(page, web) -> None:
    login(page, web)
    page.focus(".tab[data-view=machine]")
    page.keyboard.press("Enter")
    page.locator("#machine table").first.wait_for()
    assert page.locator(".tab[data-view=machine]").get_attribute("aria-current") == "page"
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.dataset.view") == "hub"
    page.keyboard.press("Space")
    assert page.locator("#view-hub").is_visible()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
