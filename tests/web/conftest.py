"""Fixtures of the web UI tests; the helpers live in ``web_harness`` (import it by name)."""

from __future__ import annotations

from web_harness import (  # noqa: F401  (fixtures)
    browser,
    console,
    expect_http_errors,
    open_page,
    page,
    web,
)
