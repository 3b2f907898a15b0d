"""famous against Hub mirrors that are not the Hub: the local server switched to behave like
them (a revision demanded, a body that is not JSON, Range ignored), through the real
huggingface_hub client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from builders import gguf_repo, tiny_gguf
from hub_server import HubServer
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from famous.store.artifacts import list_artifacts


def _clean_failure(res) -> None:
    """An error famous explains, never a traceback."""
    assert res.exit_code == 1, res.output
    assert not isinstance(res.exception, Exception), res.exception
    assert res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_mirror_that_demands_a_revision(hub: HubServer, cli) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    hub.faults.require_revision = True
    with pytest.raises(HfHubHTTPError, match="401"):  # the switch is what such mirrors do
        HfApi(endpoint=hub.url).model_info("org/Tiny-GGUF")
    hub.requests.clear()
    res = cli("pull", "org/Tiny-GGUF", "--quiet")
    assert res.exit_code == 0, res.output
    assert [a.variant for a in list_artifacts()] == ["q4_k_m"]
    asked = [p for m, p, _ in hub.requests if p.startswith("/api/models/org/")]
    assert asked and all("/revision/" in p or "/tree/" in p for p in asked)


def test_revision_from_the_name_is_sent(hub: HubServer, cli) -> None:
    repo = hub.add_repo("org/Tiny-GGUF", gguf_repo())
    hub.faults.require_revision = True
    res = cli("pull", f"org/Tiny-GGUF@{repo.sha}", "--quiet")
    assert res.exit_code == 0, res.output
    assert f"/api/models/org/Tiny-GGUF/revision/{repo.sha}" in [p for _, p, _ in hub.requests]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"", "an empty body"),
        (b"<html><body>Please log in</body></html>", "<html><body>Please log in"),
        (b'{"models": [', "text that is not JSON"),
        (b'{"error": "nope"}', "JSON that is not a list of models"),
        (b"null", "JSON that is not a list of models"),
    ],
)
def test_search_answered_with_something_else(hub: HubServer, cli, body: bytes, said: str) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo(), tags=["gguf"])
    hub.faults.api_body = body
    res = cli("search", "tiny")
    _clean_failure(res)
    assert hub.url in res.stderr and said in res.stderr
    assert "HF_ENDPOINT" in res.stderr  # what to check


def test_repo_info_answered_with_html(hub: HubServer, cli) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    hub.faults.api_body = b"<!doctype html><title>mirror</title>"
    res = cli("pull", "org/Tiny-GGUF", "--quiet")
    _clean_failure(res)
    assert hub.url in res.stderr and "not JSON" in res.stderr and "HF_ENDPOINT" in res.stderr
    assert list_artifacts() == []


def test_header_probe_reads_only_its_prefix_when_range_is_ignored(hub: HubServer, cli) -> None:
    size = 24 << 20
    data = tiny_gguf("Q4_K_M", size)
    repo = hub.add_repo("org/Big-GGUF", {"big-q4_k_m.gguf": data})
    sha = repo.files["big-q4_k_m.gguf"].sha256
    hub.faults.ignore_range = True
    # paced like a real link, so what the server sends is what the client asked to read
    # (kernel socket buffers cannot swallow the rest of the file at once)
    hub.faults.rate["big-q4_k_m.gguf"] = 16 << 20
    res = cli("pull", "org/Big-GGUF", "--quiet")
    assert res.exit_code == 0, res.output
    sent = hub.bytes_sent(sha)
    probes = [n for rng, n in sent if rng and rng.startswith("bytes=0-")]
    assert len(probes) == 1 and probes[0] < len(data) // 4, sent  # the prefix, not the file
    assert sum(n for _, n in sent) < len(data) * 1.3  # downloaded once, not twice
    path = Path(list_artifacts()[0].path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert list_artifacts()[0].metadata["gguf"]["architecture"] == "llama"


def test_header_probe_with_range_honoured(hub: HubServer, cli) -> None:
    repo = hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=3 << 20))
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    assert cli("pull", "org/Tiny-GGUF", "--quiet").exit_code == 0
    assert [n for rng, n in hub.bytes_sent(sha) if rng] == [2 << 20]
