"""Fault injection on the local Hub: the catalog never lists a partial or corrupt artifact,
and the next pull succeeds once the fault is gone."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import gguf_repo
from hub_server import HubServer, environment

from famous.hub import errors
from famous.hub.progress import NullProgress
from famous.hub.pull import pull
from famous.store.artifacts import check_artifact, list_artifacts

BIG = 3 << 20  # payload of the q4_k_m file: several chunks, hashed on the second thread


def _repo(hub: HubServer):
    return hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=BIG))


def _ranges(hub: HubServer, sha: str) -> list[str | None]:
    return [r for m, p, r in hub.requests if m == "GET" and p.startswith(f"/cdn/{sha}")]


def _healthy(result, repo) -> None:
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    assert hashlib.sha256(Path(result.artifact.path).read_bytes()).hexdigest() == sha
    assert not check_artifact(result.artifact, deep=True)


def test_connection_cut_mid_file_resumes_with_range(hub: HubServer, cpu_report) -> None:
    repo = _repo(hub)
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    hub.faults.cut_after["tiny-q4_k_m.gguf"] = 1_000_000
    hub.faults.cut_times = 2  # the header peek, then the download
    result = pull("org/Tiny-GGUF", report=cpu_report)
    _healthy(result, repo)
    assert "bytes=1000000-" in _ranges(hub, sha)


def test_cut_then_next_pull_resumes(hub: HubServer, cpu_report) -> None:
    repo = _repo(hub)
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    hub.faults.cut_after["tiny-q4_k_m.gguf"] = 1_000_000
    with pytest.raises(errors.DownloadFailed, match="again"):
        pull("org/Tiny-GGUF", report=cpu_report, retries=0)
    assert list_artifacts() == []
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)
    assert _ranges(hub, sha)[-1] == "bytes=1000000-"


def test_server_ignoring_range_restarts_cleanly(hub: HubServer, cpu_report) -> None:
    repo = _repo(hub)
    hub.faults.cut_after["tiny-q4_k_m.gguf"] = 1_000_000
    with pytest.raises(errors.DownloadFailed):
        pull("org/Tiny-GGUF", report=cpu_report, retries=0)
    hub.faults.clear()
    hub.faults.ignore_range = True
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)


def test_wrong_checksum_is_never_registered(hub: HubServer, cpu_report) -> None:
    repo = _repo(hub)
    hub.faults.corrupt.add("tiny-q4_k_m.gguf")
    with pytest.raises(errors.ChecksumMismatch, match="nothing was registered"):
        pull("org/Tiny-GGUF", report=cpu_report)
    assert list_artifacts() == []
    home = Path(os.environ["FAMOUS_HOME"])
    assert not list(home.rglob("tiny-q4_k_m.gguf"))  # the bad bytes were not kept
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)


def test_missing_file_404(hub: HubServer, cpu_report) -> None:
    repo = _repo(hub)
    hub.faults.missing.add("tiny-q4_k_m.gguf")
    with pytest.raises(errors.FileMissing, match="404"):
        pull("org/Tiny-GGUF", report=cpu_report)
    assert list_artifacts() == []
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)


def test_gated_401_then_token(hub: HubServer, cpu_report, monkeypatch) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=BIG), gated=True)
    with pytest.raises(errors.GatedRepo):
        pull("org/Tiny-GGUF", report=cpu_report)
    assert list_artifacts() == []
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert pull("org/Tiny-GGUF", report=cpu_report).artifact


def test_slow_server_times_out(hub: HubServer, cpu_report, monkeypatch) -> None:
    repo = _repo(hub)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub.faults.stall["tiny-q4_k_m.gguf"] = 3.0
    with pytest.raises(errors.DownloadFailed, match="timed out"):
        pull("org/Tiny-GGUF", report=cpu_report, retries=1)
    assert list_artifacts() == []
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)


def _pull_process(hub: HubServer, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **environment(hub), "FAMOUS_HOME": str(home)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.Popen(
        [sys.executable, "-m", "famous", "pull", "org/Tiny-GGUF", "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_partial(home: Path, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = [p for p in home.rglob("*.part") if p.stat().st_size > 200_000]
        if parts:
            return parts[0]
        time.sleep(0.05)
    raise AssertionError("the pull never started writing")


def test_sigkill_mid_pull_leaves_readable_catalog_and_resumes(
    hub: HubServer, famous_home: Path, cpu_report
) -> None:
    repo = _repo(hub)
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    hub.faults.rate["tiny-q4_k_m.gguf"] = 1 << 20
    proc = _pull_process(hub, famous_home)
    try:
        _wait_for_partial(famous_home)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    listed = subprocess.run(
        [sys.executable, "-m", "famous", "list", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.strip() == "[]"
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF", report=cpu_report), repo)
    assert (_ranges(hub, sha)[-1] or "").startswith("bytes=")  # it resumed, not restarted


def test_sigkill_at_random_points_never_registers_a_broken_artifact(
    hub: HubServer, famous_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of ``famous pull`` anywhere between its start and its end (listing, header
    probe, download, hashing, the rename, the catalog write): afterwards the catalog reads,
    lists nothing or a whole verified artifact, and a pull in the same home completes."""
    repo = _repo(hub)
    hub.faults.rate["tiny-q4_k_m.gguf"] = 4 << 20
    started = time.monotonic()
    whole = _pull_process(hub, famous_home.parent / "reference")
    assert whole.wait(timeout=120) == 0, whole.stderr.read() if whole.stderr else ""
    duration = time.monotonic() - started
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for point, delay in enumerate(sorted(rng.uniform(0.05, duration) for _ in range(6))):
        home = famous_home.parent / f"killed-{point}"
        proc = _pull_process(hub, home)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        monkeypatch.setenv("FAMOUS_HOME", str(home))
        for artifact in list_artifacts(with_files=True):  # the catalog opens and reads
            assert not check_artifact(artifact, deep=True), (seed, delay, artifact)
    hub.faults.clear()
    _healthy(pull("org/Tiny-GGUF"), repo)  # the last killed home finishes the job


def test_two_pulls_at_once_share_one_download(hub: HubServer, famous_home: Path) -> None:
    repo = _repo(hub)
    sha = repo.files["tiny-q4_k_m.gguf"].sha256
    hub.faults.rate["tiny-q4_k_m.gguf"] = 4 << 20
    first = _pull_process(hub, famous_home)
    second = _pull_process(hub, famous_home)
    _, err1 = first.communicate(timeout=120)
    _, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    downloads = [r for r in _ranges(hub, sha) if not (r or "").startswith("bytes=0-")]
    assert len(downloads) == 1  # the second waited and reused
    artifacts = list_artifacts()
    assert len(artifacts) == 1 and not check_artifact(list_artifacts(with_files=True)[0], deep=True)


class _Sink(NullProgress):
    """Sets ``cancel`` (or raises ``error``) once ``after`` bytes of ``name`` arrived."""

    def __init__(self, name: str, after: int, cancel=None, error: Exception | None = None):
        self.name, self.after, self.cancel, self.error = name, after, cancel, error
        self.seen = 0

    def advance(self, name: str, n: int) -> None:
        if name != self.name:
            return
        self.seen += n
        if self.seen >= self.after:
            if self.error is not None:
                raise self.error
            self.cancel.set()


def _dest(famous_home: Path) -> Path:
    from famous.store.paths import models_dir

    [dest] = (models_dir() / "hub" / "org--Tiny-GGUF").iterdir()
    return dest


def test_cancel_stops_every_file_registers_nothing_and_resumes(
    hub: HubServer, cpu_report, famous_home: Path
) -> None:
    """A cancel set from outside stops both shards at their next chunk: PullCancelled (not
    a DownloadFailed of the other shard), no artifact, the lock free, the bytes kept, and
    the next pull asks only for the rest."""
    import threading

    from famous.store.locks import try_held

    repo = hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=BIG))
    first = "tiny-f16-00001-of-00002.gguf"
    hub.faults.rate["*"] = 4 << 20  # both shards in flight when the cancel comes
    cancel = threading.Event()
    sink = _Sink(first, 1 << 20, cancel=cancel)
    with pytest.raises(errors.PullCancelled):
        pull("org/Tiny-GGUF", variant="F16", report=cpu_report, progress=sink, cancel=cancel)
    hub.faults.clear()
    assert list_artifacts() == []
    dest = _dest(famous_home)
    with try_held(str(dest)) as free:
        assert free
    parts = list((dest / ".famous" / "partial").iterdir())
    assert parts and all(p.stat().st_size > 0 for p in parts)
    result = pull("org/Tiny-GGUF", variant="F16", report=cpu_report)
    assert result.variant == "f16" and not check_artifact(result.artifact, deep=True)
    sha = repo.files[first].sha256
    assert (_ranges(hub, sha)[-1] or "").startswith("bytes=") and _ranges(hub, sha)[-1] != (
        "bytes=0-"
    )


def test_a_worker_exception_is_the_error_reported(
    hub: HubServer, cpu_report, famous_home: Path
) -> None:
    """An exception in one download thread (here the progress sink's) stops the other file
    and is what the pull raises, not the other file's DownloadStopped; nothing registered."""
    hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=BIG))
    hub.faults.rate["tiny-f16-00001-of-00002.gguf"] = 2 << 20  # still running when 2 fails
    boom = ValueError("the sink broke")
    sink = _Sink("tiny-f16-00002-of-00002.gguf", 1, error=boom)
    started = time.monotonic()
    with pytest.raises(ValueError, match="the sink broke"):
        pull("org/Tiny-GGUF", variant="F16", report=cpu_report, progress=sink)
    assert time.monotonic() - started < 5  # the slow shard was stopped, not waited for
    assert list_artifacts() == []
