"""Imports are atomic: a copy killed or failing halfway never leaves a torn file registered, a
re-import never writes over the registered file, and the copy a re-registration replaces is
deleted (only famous's own copies, never a user's file)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import crafted
import pytest
from builders import tiny_gguf

from famous.store.artifacts import check_artifact, disk_usage, list_artifacts

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _only_artifact():
    (artifact,) = list_artifacts(with_files=True)
    assert not check_artifact(artifact, deep=True)
    return artifact


def _json(res) -> object:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old" / "mine.gguf", tmp_path / "new" / "mine.gguf"
    for path, quant in ((old, "Q8_0"), (new, "Q8_0")):
        path.parent.mkdir()
        path.write_bytes(tiny_gguf(quant, payload=64 * 1024 if path is old else 96 * 1024))
    return old, new


def test_failed_reimport_keeps_the_old_registration(
    cli, famous_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = _two_models(tmp_path)
    assert cli("import", str(old), "--copy").exit_code == 0
    before = _only_artifact()

    def fail(*args: object, **kwargs: object):
        raise OSError("disk on fire")

    monkeypatch.setattr("famous.hub.pull.register_artifact", fail)
    assert isinstance(cli("import", str(new), "--copy").exception, OSError)
    after = _only_artifact()
    assert after == before and _sha(Path(after.path)) == _sha(old)
    usage = disk_usage()
    assert usage.orphan_paths == [] and usage.partial_bytes == 0  # the new copy was removed


def test_reimport_with_copy_replaces_and_drops_the_old_copy(
    cli, famous_home: Path, tmp_path: Path
) -> None:
    old, new = _two_models(tmp_path)
    assert cli("import", str(old), "--copy").exit_code == 0
    first = Path(_only_artifact().root)
    assert cli("import", str(new), "--copy").exit_code == 0
    second = _only_artifact()
    assert _sha(Path(second.path)) == _sha(new) and Path(second.root) != first
    assert not first.exists()  # famous's old copy is gone, not orphaned
    assert disk_usage().orphan_paths == []
    assert old.exists() and new.exists()  # the user's files are untouched


def test_reimport_in_place_drops_famous_copy_never_user_files(
    cli, famous_home: Path, tmp_path: Path
) -> None:
    old, new = _two_models(tmp_path)
    assert cli("import", str(old), "--copy").exit_code == 0
    copy_root = Path(_only_artifact().root)
    assert cli("import", str(old)).exit_code == 0  # the same name, now in place
    assert Path(_only_artifact().path) == old and not copy_root.exists()
    usage = _json(cli("du", "--format", "json"))
    assert usage["orphan_paths"] == [] and usage["partial_bytes"] == 0
    assert "unfinished" not in cli("prune").stdout
    # in place over in place, then a copy over in place: no user file is ever deleted
    assert cli("import", str(new), "--name", "mine").exit_code == 0
    assert cli("import", str(old), "--name", "mine", "--copy").exit_code == 0
    assert old.exists() and new.exists() and _sha(old) != _sha(new)
    assert Path(_only_artifact().root).is_relative_to(famous_home)


def _kill_while_copying(source: Path, home: Path, fraction: float) -> None:
    """Start ``famous import --copy`` and SIGKILL it once a file it made under models/ holds
    ``fraction`` of the source's bytes (1.0: all of them, while it fsyncs and registers)."""
    env = {**os.environ, "FAMOUS_HOME": str(home), "PYTHONPATH": SRC}
    args = [sys.executable, "-m", "famous", "import", str(source), "--name", "big", "--copy"]
    before = set((home / "models").rglob("*"))
    want = int(source.stat().st_size * fraction)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            growing = [p for p in (home / "models").rglob("*") if p not in before]
            if any(p.stat().st_size >= want for p in growing if p.is_file()):
                break
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_kill_9_while_copying_never_registers_a_torn_file(
    cli, famous_home: Path, tmp_path: Path
) -> None:
    size = 192 << 20  # sparse: no disk for the sources, a real copy for famous
    old = crafted.write_sparse(tmp_path / "big-F16.gguf", "old", size)
    new = crafted.write_sparse(tmp_path / "big-v2-F16.gguf", "new", size)
    old_sha, new_sha = _sha(old), _sha(new)
    assert cli("import", str(old), "--name", "big", "--copy").exit_code == 0
    rng = random.Random(20240611)  # a few random points, the same on every run
    for fraction in sorted(rng.uniform(0.05, 0.95) for _ in range(3)):
        _kill_while_copying(new, famous_home, fraction)
        assert [a["model"] for a in _json(cli("list", "--format", "json"))] == ["big"]
        artifact = _only_artifact()  # complete: sizes and sha256 re-checked
        assert artifact.files[0].sha256 == old_sha, f"killed at {fraction:.0%}"
    usage = _json(cli("du", "--format", "json"))
    assert len(usage["orphan_paths"]) == 3 and usage["partial_bytes"] > 0
    assert "famous prune" in cli("du").stdout
    pruned = cli("prune").stdout
    assert pruned.count("removed unfinished download") == 3, pruned
    assert _only_artifact().files[0].sha256 == old_sha  # prune kept the registered copy
    # killed after the last byte: either the old registration or the new one, both whole
    _kill_while_copying(new, famous_home, 1.0)
    assert _only_artifact().files[0].sha256 in (old_sha, new_sha)
    assert cli("import", str(new), "--name", "big", "--copy").exit_code == 0
    assert _only_artifact().files[0].sha256 == new_sha
    assert cli("prune").exit_code == 0
    usage = disk_usage()
    assert usage.orphan_paths == [] and usage.partial_bytes == 0
    (folder,) = (famous_home / "models" / "local").iterdir()  # old copies all gone
    assert folder == Path(_only_artifact().root)


def test_reimport_moves_deployments_and_keeps_files_in_use(
    cli, famous_home: Path, tmp_path: Path
) -> None:
    from famous.store.db import connect, transaction

    old, new = _two_models(tmp_path)
    assert cli("import", str(old), "--copy").exit_code == 0
    first = _only_artifact()
    conn = connect()
    with transaction(conn):
        conn.execute(
            "INSERT INTO deployments (name, artifact_id, engine, runtime, status, updated_at)"
            " VALUES ('mine', ?, 'cpu', 'llamacpp', 'ready', 'now')",
            (first.id,),
        )
    assert cli("import", str(new), "--copy").exit_code == 0
    second = _only_artifact()
    (row,) = conn.execute("SELECT artifact_id FROM deployments").fetchall()
    conn.close()
    assert row["artifact_id"] == second.id
    assert Path(first.path).is_file()  # a running engine's file is not pulled from under it
