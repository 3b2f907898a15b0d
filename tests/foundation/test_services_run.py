"""What `famous run MODEL` names before any gateway or download is involved."""

from __future__ import annotations

from pathlib import Path

from famous.services import run


def test_a_local_file_or_folder_is_registered_not_pulled(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    folder = tmp_path / "tiny-hf"
    folder.mkdir()
    assert run.prepare(str(gguf)) == run.RunTarget("tiny", str(gguf.resolve()))
    assert run.prepare(str(folder)) == run.RunTarget("tiny-hf", str(folder.resolve()))


def test_a_package_folder_is_not_a_local_model(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("name: x\n")
    assert run.local_model(str(tmp_path)) is None


def test_nothing_is_installed_without_a_catalog(famous_home: Path) -> None:
    assert not run.installed("qwen2.5-0.5b-instruct")
    assert not (famous_home / "catalog.db").exists()
