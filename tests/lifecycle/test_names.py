"""Hostile model names are refused as bad arguments (exit 2) before anything is read from the
Hub or written under FAMOUS_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import tiny_gguf
from hub_server import HubServer

from famous.hub.names import parse_reference

HOSTILE = [
    "a/..",
    "../x",
    "./..",
    "a/b/../../c",
    "/no/such/model",
    "a/b\0c",
    "a/b\nc",
    "org/name\n",
    "hf.co/a/..",
    "hf.co/org",
    "org/x@../../y",
    "org/x@main/../..",
    "org/x--y",
    "org/.hidden",
    "org/name.git",
    "org/na me",
    "my model",
    "x/",
    " ",
]


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_pull_refuses_hostile_names(hub: HubServer, cli, famous_home: Path, name: str) -> None:
    res = cli("pull", name, "--quiet")
    assert res.exit_code == 2, res.output
    assert not isinstance(res.exception, Exception), res.exception
    assert res.stderr.startswith("error: ") and "Traceback" not in res.output
    assert not famous_home.exists() and hub.requests == []


def test_existing_paths_that_are_not_packages(hub: HubServer, cli, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_gguf())
    for path in (str(model), str(tmp_path), "/"):
        res = cli("pull", path, "--quiet")
        assert res.exit_code == 2 and "famous import" in res.stderr, res.output
    assert hub.requests == []


@pytest.mark.parametrize("name", ["a\nb", "a\0b", "", "\x1b[31mred"], ids=repr)
def test_import_refuses_hostile_catalog_names(cli, famous_home: Path, tmp_path: Path, name) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_gguf())
    res = cli("import", str(model), "--name", name, "--copy")
    assert res.exit_code == 2, res.output
    assert "catalog name" in res.stderr
    assert not (famous_home / "models").exists()


def test_names_that_stay_valid() -> None:
    ref = parse_reference("hf.co/Qwen/Qwen2.5-0.5B-GGUF:Q4_K_M")
    assert (ref.kind, ref.name, ref.variant) == ("repo", "Qwen/Qwen2.5-0.5B-GGUF", "Q4_K_M")
    ref = parse_reference("org/model_v1.5@refs/pr/3:q8_0")
    assert (ref.name, ref.revision, ref.variant) == ("org/model_v1.5", "refs/pr/3", "q8_0")
    assert parse_reference("qwen2.5-0.5b-instruct:q4_k_m").kind == "package"
