"""``famous import`` registers only sound models: files that are not GGUF, truncated files and
hostile headers are refused (exit 2, the file and the problem named, nothing registered),
cheaply, whatever their headers claim."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import crafted as c
import pytest
from builders import safetensors_repo, tiny_gguf

from famous.formats import gguf_meta
from famous.store.artifacts import list_artifacts

HUGE = 1 << 62


def _valid(data_bytes: int = 4096) -> bytes:
    head, size = c.gguf("ok", data_bytes)
    return head + b"\0" * size


def _with_kv(extra: bytes) -> bytes:
    """A file whose last metadata pair is ``extra`` (counted), then sound tensors."""
    kvs = [*c.model_kvs("x"), extra]
    return c.header(kvs, [c.tensor_info("t", [16], c.F16, 0)]) + b"\0" * 64


def _with_tensor(dims: list[int], ggml_type: int = c.F16, offset: int = 0) -> bytes:
    return c.header(c.model_kvs("x"), [c.tensor_info("t", dims, ggml_type, offset)]) + bytes(64)


def _nested(depth: int) -> bytes:
    value = struct.pack("<IQ", c.U32, 1) + struct.pack("<I", 7)
    for _ in range(depth):
        value = struct.pack("<IQ", c.ARRAY, 1) + value
    return c.string("deep") + struct.pack("<I", c.ARRAY) + value


BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "random bytes": (lambda: os.urandom(1 << 16), "not a GGUF file (bad magic)"),
    "empty": (lambda: b"", "not a GGUF file (bad magic)"),
    "cut early": (lambda: tiny_gguf()[:100], "more than a file of 100 bytes can hold"),
    "cut in the header": (lambda: c.gguf()[0][:-40], "truncated GGUF header"),
    "cut in the tensor data": (lambda: tiny_gguf()[:-1000], "past the end of the file"),
    "kv_count 2^62": (lambda: c.header(c.model_kvs("x"), [], kv_count=HUGE), "metadata keys"),
    "tensor_count 2^62": (lambda: c.header([], [], tensor_count=HUGE), "tensors, more than"),
    "version 99": (lambda: c.header([], [], version=99), "GGUF version 99 is newer"),
    "version 1": (lambda: c.header([], [], version=1), "GGUF version 1 is too old"),
    "string of 2^40 bytes": (
        lambda: _with_kv(c.string("k") + struct.pack("<I", c.STRING) + c.string("", 1 << 40)),
        "implausible string length",
    ),
    "string of 2^27 bytes": (
        lambda: _with_kv(c.string("k") + struct.pack("<I", c.STRING) + c.string("", 1 << 27)),
        "truncated GGUF header",
    ),
    "u8 array of 2^62": (
        lambda: _with_kv(c.string("k") + struct.pack("<IIQ", c.ARRAY, 0, HUGE)),
        "truncated GGUF header",
    ),
    "string array of 2^62": (
        lambda: _with_kv(c.string("k") + struct.pack("<IIQ", c.ARRAY, c.STRING, HUGE)),
        "truncated GGUF header",
    ),
    "arrays nested 50 deep": (lambda: _with_kv(_nested(50)), "nested too deeply"),
    "unknown value type": (
        lambda: _with_kv(c.string("k") + struct.pack("<I", 77)),
        "unknown GGUF value type 77",
    ),
    "tensor past the end": (lambda: _with_tensor([16], offset=1 << 40), "past the end"),
    "tensor of 2^62 elements": (lambda: _with_tensor([HUGE]), "past the end"),
    "misaligned tensor": (lambda: _with_tensor([16], offset=3), "alignment"),
    "nine dimensions": (lambda: _with_tensor([1] * 9), "9 dimensions"),
    "partial quant block": (lambda: _with_tensor([33], ggml_type=2), "not whole blocks of 32"),
}


def _assert_refused(res, path: Path, problem: str, famous_home: Path) -> None:
    assert res.exit_code == 2, res.output
    assert not isinstance(res.exception, Exception), res.exception
    assert str(path) in res.stderr and problem in res.stderr, res.stderr
    assert "nothing was registered" in res.stderr
    assert list_artifacts() == []
    models = famous_home / "models"
    assert not models.exists() or not [p for p in models.rglob("*") if p.is_file()]


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_gguf_files_are_refused(cli, famous_home: Path, tmp_path: Path, case: str) -> None:
    build, problem = BAD_FILES[case]
    path = tmp_path / "model-Q4_K_M.gguf"
    path.write_bytes(build())
    res = cli("import", str(path), "--copy")
    _assert_refused(res, path, problem, famous_home)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_hostile_headers_cost_no_memory(tmp_path: Path, case: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(BAD_FILES[case][0]())
    tracemalloc.start()
    try:
        with pytest.raises(gguf_meta.GGUFError):
            gguf_meta.check_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_file_that_is_not_gguf_at_all(cli, famous_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    _assert_refused(cli("import", str(path)), path, "is not a .gguf file", famous_home)


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "model"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _weights_with_header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(64)


def _st_files() -> dict[str, bytes]:
    files = safetensors_repo(with_pickle=False)
    del files["modeling_custom.py"]
    return files


BAD_FOLDERS: dict[str, tuple[Callable[[], dict[str, bytes]], str, str]] = {
    "no weights": (lambda: {"README.md": b"# hi\n"}, "", "holds no model weights"),
    "no config.json": (
        lambda: {k: v for k, v in _st_files().items() if k != "config.json"},
        "",
        "has no config.json",
    ),
    "config.json not JSON": (
        lambda: {**_st_files(), "config.json": b"<html>"},
        "config.json",
        "is not a JSON object",
    ),
    "weights of random bytes": (
        lambda: {**_st_files(), "model.safetensors": os.urandom(4096)},
        "model.safetensors",
        "is not a safetensors file",
    ),
    "tensor outside the weights": (
        lambda: {
            **_st_files(),
            "model.safetensors": _weights_with_header(
                {"w": {"dtype": "F32", "shape": [64], "data_offsets": [0, 256]}}
            ),
        },
        "model.safetensors",
        "lies outside the file's 64 data bytes",
    ),
    "GGUF of random bytes": (
        lambda: {"model-q4_k_m.gguf": os.urandom(4096)},
        "model-q4_k_m.gguf",
        "bad magic",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folders_are_refused(cli, famous_home: Path, tmp_path: Path, case: str) -> None:
    build, culprit, problem = BAD_FOLDERS[case]
    folder = _folder(tmp_path, build())
    res = cli("import", str(folder), "--copy")
    _assert_refused(res, folder / culprit if culprit else folder, problem, famous_home)


def test_sound_models_still_import(cli, famous_home: Path, tmp_path: Path) -> None:
    single = tmp_path / "mine-Q4_K_M.gguf"
    single.write_bytes(tiny_gguf("Q4_K_M"))
    crafted = tmp_path / "crafted-F16.gguf"
    crafted.write_bytes(_valid())
    folder = _folder(tmp_path, _st_files())
    for path in (single, crafted, folder):
        res = cli("import", str(path), "--copy")
        assert res.exit_code == 0, res.output
    assert sorted(a.model for a in list_artifacts()) == ["crafted-F16", "mine-Q4_K_M", "model"]


def test_type_sizes_match_ggml() -> None:
    from gguf.constants import GGML_QUANT_SIZES

    known = {t.value: sizes for t, sizes in GGML_QUANT_SIZES.items()}
    assert {k: known[k] for k in gguf_meta.GGML_TYPE_SIZES} == gguf_meta.GGML_TYPE_SIZES


def test_a_gguf_folder_with_its_projector_imports_both(
    cli, famous_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "seeing"
    folder.mkdir()
    (folder / "seeing-Q4_K_M.gguf").write_bytes(tiny_gguf("Q4_K_M"))
    (folder / "mmproj-seeing-f16.gguf").write_bytes(tiny_gguf("F16", arch="clip"))
    res = cli("import", str(folder), "--copy")
    assert res.exit_code == 0, res.output
    (artifact,) = list_artifacts(with_files=True)
    assert sorted(f.relpath for f in artifact.files) == [
        "mmproj-seeing-f16.gguf",
        "seeing-Q4_K_M.gguf",
    ]
    assert Path(artifact.path).name == "seeing-Q4_K_M.gguf"
    assert (Path(artifact.path).parent / "mmproj-seeing-f16.gguf").is_file()
