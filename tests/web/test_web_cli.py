"""``famous ui``: starts the gateway when none runs, prints the UI's address with the admin
token in the fragment, and that address opens the UI logged in (the token then leaves the
address); a second call reuses the running gateway and opens the browser."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
import serving_harness as harness

from famous.runtimes.base import free_port

pytestmark = pytest.mark.slow


def _gone(pid: int, seconds: float = 30) -> bool:
    """The detached gateway exited (``famous ui`` is not its parent: psutil polls it)."""
    try:
        psutil.Process(pid).wait(timeout=seconds)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_famous_ui_starts_the_gateway_and_opens_logged_in(tmp_path: Path, page) -> None:
    home = tmp_path / "home"
    port = free_port()
    pid = None
    try:
        done = harness.famous_cli(home, "ui", "--no-open", "--port", str(port), timeout=90)
        assert done.returncode == 0, done.stderr
        pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        token = (home / "admin-token").read_text().strip()
        address = done.stdout.strip().splitlines()[-1]
        assert address == f"http://127.0.0.1:{port}/#token={token}"
        # without --no-open it hands the address to the browser ($BROWSER here: a script)
        opened = tmp_path / "opened.txt"
        browser = tmp_path / "browser.sh"
        browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
        browser.chmod(0o755)
        env = {**harness.famous_env(home), "BROWSER": str(browser)}
        again = harness.famous_cli(home, "ui", timeout=60, env=env)
        assert again.returncode == 0 and again.stdout.strip() == address, again.stderr
        assert opened.read_text() == address
        assert json.loads((home / "run" / "gateway.json").read_text())["pid"] == pid
        page.goto(address)
        page.locator("#nav").wait_for(state="visible")
        assert page.url == f"http://127.0.0.1:{port}/"
        assert page.evaluate("sessionStorage.getItem('famous.token')") == token
        stopped = harness.famous_cli(home, "stop", "--gateway", timeout=90)
        assert stopped.returncode == 0, stopped.stderr
        assert _gone(pid)
        pid = None
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            _gone(pid)
