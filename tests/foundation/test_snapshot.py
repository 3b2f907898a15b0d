"""Validated package snapshots: records read back equal the validated models, select the same
engines on every captured machine, and are never used once a package file changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from famous.hardware import Host, detect
from famous.manifests.errors import ManifestError, PackageNotFound
from famous.manifests.loader import builtin_package_names, builtin_packages_dir, find_package
from famous.manifests.records import PackageRecord, Record
from famous.manifests.schema import ModelPackage
from famous.manifests.snapshot import read_package, snapshot_dir
from famous.matchmaker import evaluate_all
from famous.plain import to_plain

from .conftest import machine_names, machine_root


def _same(model: Any, record: Any, where: str) -> None:
    """Every field of the validated model, at every depth, equals the record's."""
    if isinstance(model, BaseModel):
        assert isinstance(record, Record), where
        for name in type(model).model_fields:
            _same(getattr(model, name), getattr(record, name), f"{where}.{name}")
    elif isinstance(model, dict):
        assert list(model) == list(record), where
        for key in model:
            _same(model[key], record[key], f"{where}[{key}]")
    elif isinstance(model, list):
        assert len(model) == len(record), where
        for i, (a, b) in enumerate(zip(model, record, strict=True)):
            _same(a, b, f"{where}[{i}]")
    else:
        assert model == record and type(model) is type(record), where


def test_every_builtin_package_reads_back_as_it_validated() -> None:
    for name in builtin_package_names():
        validated = read_package(name)  # first read: validates and writes the snapshot
        assert isinstance(validated, ModelPackage)
        record = read_package(name)
        assert isinstance(record, PackageRecord), name
        _same(validated, record, name)
        for option in validated.model.options:
            assert record.shape_of(option).active == validated.shape_of(option).active
        assert to_plain(record.engines) == to_plain(validated.engines)  # show-engine's JSON
        assert [e.uses_gpu for e in record.engines.values()] == [
            e.uses_gpu for e in validated.engines.values()
        ]


@pytest.mark.parametrize("machine", machine_names())
def test_records_select_as_the_validated_packages_do(machine: str) -> None:
    report = detect(Host.fake(machine_root(machine)))
    for name in builtin_package_names():
        validated = find_package(name)
        read_package(name)
        record = read_package(name)
        assert isinstance(record, PackageRecord)
        assert to_plain(evaluate_all(record, report)) == to_plain(evaluate_all(validated, report))


def _user_package(home: Path) -> Path:
    folder = home / "packages" / "qwen2.5-0.5b-instruct-copy"
    shutil.copytree(builtin_packages_dir() / "qwen2.5-0.5b-instruct", folder)
    model = folder / "model.yaml"
    model.write_text(
        model.read_text().replace("name: qwen2.5-0.5b-instruct", f"name: {folder.name}", 1)
    )
    return folder


def test_a_changed_file_is_validated_again_and_its_error_reported(famous_home: Path) -> None:
    folder = _user_package(famous_home)
    assert isinstance(read_package(folder.name), ModelPackage)
    assert isinstance(read_package(folder.name), PackageRecord)
    engine = folder / "engines" / "cpu" / "engine.yaml"
    engine.write_text(engine.read_text().replace("vendor:", "vendr:", 1))
    with pytest.raises(ManifestError) as raised:
        read_package(folder.name)
    assert "unknown key 'vendr'" in str(raised.value) and str(engine) in str(raised.value)
    with pytest.raises(ManifestError):
        read_package(folder.name)  # the old snapshot is never taken for the broken file
    engine.write_text(engine.read_text().replace("vendr:", "vendor:", 1))
    assert isinstance(read_package(folder.name), ModelPackage)
    assert len(list(snapshot_dir().glob(f"{folder.name}-*.json"))) == 1  # older ones dropped


def test_same_size_edit_with_a_new_mtime_is_seen(famous_home: Path) -> None:
    folder = _user_package(famous_home)
    read_package(folder.name)
    model = folder / "model.yaml"
    text = model.read_text()
    model.write_text(text.replace("license: apache-2.0", "license: apache-2.1", 1))
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    fresh = read_package(folder.name)
    assert isinstance(fresh, ModelPackage) and fresh.model.license == "apache-2.1"
    assert read_package(folder.name).model.license == "apache-2.1"


def test_a_damaged_or_foreign_snapshot_is_ignored_and_rewritten(famous_home: Path) -> None:
    read_package("qwen2.5-0.5b-instruct")
    (path,) = snapshot_dir().glob("qwen2.5-0.5b-instruct-*.json")
    for damage in ("{not json", "[]", json.dumps({"source": "elsewhere"}), '{"source": 1}'):
        path.write_text(damage)
        assert isinstance(read_package("qwen2.5-0.5b-instruct"), ModelPackage), damage
        assert isinstance(read_package("qwen2.5-0.5b-instruct"), PackageRecord), damage


def test_an_unwritable_cache_only_slows_the_answer(famous_home: Path) -> None:
    famous_home.mkdir(parents=True, exist_ok=True)
    (famous_home / "cache").write_text("a file where the cache folder would go")
    assert isinstance(read_package("qwen2.5-0.5b-instruct"), ModelPackage)
    assert isinstance(read_package("qwen2.5-0.5b-instruct"), ModelPackage)


def test_unknown_package_is_not_found_with_the_names() -> None:
    with pytest.raises(PackageNotFound) as raised:
        read_package("no-such-model")
    assert "qwen2.5-0.5b-instruct" in raised.value.known
