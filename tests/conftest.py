"""Suite-wide rules: nothing is skipped but what needs a GPU, and what the run had to build
first is reported with its time.

A skip hides a half of the suite that CI then proves nothing about, so a run with any skip
that is not ``gpu``-marked fails (exit status 1) and lists them. Set
``FAMOUS_ALLOW_SKIPS=1`` to let a local run through anyway.
"""

from __future__ import annotations

import os

import pytest

from provision import provision_report

# ``famous run`` and ``famous pull`` build llama-server the first time a GGUF model needs
# one (minutes). The suite provisions one build per machine (provision.llama_server) and
# hands it over where a test wants it; the tests of the automatic build set this back.
os.environ.setdefault("FAMOUS_LLAMA_SERVER_BUILD", "never")

_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "gpu" not in report.keywords:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _unexpected_skips.append(f"{report.nodeid} (whole module): {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    allowed = os.environ.get("FAMOUS_ALLOW_SKIPS") == "1"
    if _unexpected_skips and not allowed and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:
    lines = provision_report()
    if lines:
        terminalreporter.section("provisioned for the suite")
        for line in lines:
            terminalreporter.write_line(line)
    if _unexpected_skips:
        allowed = os.environ.get("FAMOUS_ALLOW_SKIPS") == "1"
        terminalreporter.section("skips that need no GPU" + (" (allowed)" if allowed else ""))
        for line in _unexpected_skips:
            terminalreporter.write_line(line)
        if not allowed:
            terminalreporter.write_line(
                "only gpu-marked tests may skip: install what the reason names, or set "
                "FAMOUS_ALLOW_SKIPS=1 for a local run"
            )
