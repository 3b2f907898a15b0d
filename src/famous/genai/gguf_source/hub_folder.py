"""A GGUF written out as a Hub model folder: ``config.json``, ``model.safetensors`` (the
dequantized weights under their Hub names, float32), ``tokenizer.json`` and
``tokenizer_config.json`` (special tokens, chat template).

The exporters (GGUF, ExecuTorch, LiteRT) and the quality report read Hub folders; this is
how ``famous build`` and ``famous quantize`` take a GGUF without a second code path. A
folder already written for the same file (same size and modification time, recorded in
``gguf_source.json``) is reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from famous.genai.gguf_source.checkpoint import GGUFCheckpoint
from famous.genai.gguf_source.reader import GGUFFile, is_gguf
from famous.genai.gguf_source.vocab import tokenizer_from_gguf

STAMP = "gguf_source.json"


def _stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"gguf": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_hub_folder(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """``out_dir`` holding the GGUF as a Hub folder (written once, into a temporary name
    renamed into place, so an interrupted write is never taken for a finished one)."""
    from safetensors.torch import save_file

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    stamp = _stamp(gguf_path)
    done = out_dir / STAMP
    if done.is_file() and json.loads(done.read_text(encoding="utf-8")) == stamp:
        return out_dir
    ckpt = GGUFCheckpoint(gguf_path)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        config = {**ckpt.hf_config, "torch_dtype": "float32"}
        config = {k: v for k, v in config.items() if v is not None}
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        tensors = {name: ckpt.read(name).contiguous() for name in ckpt.shapes}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del tensors
        tok, conf = tokenizer_from_gguf(GGUFFile(gguf_path))
        tok.save(str(tmp / "tokenizer.json"))
        conf = {k: v for k, v in conf.items() if v is not None}
        (tmp / "tokenizer_config.json").write_text(json.dumps(conf, indent=2), encoding="utf-8")
        (tmp / STAMP).write_text(json.dumps(stamp), encoding="utf-8")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@contextlib.contextmanager
def as_hub_folder(source: str | Path) -> Iterator[Path]:
    """``source`` itself when it is a folder; a GGUF as a temporary Hub folder, removed after."""
    if not is_gguf(source):
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="famous-gguf-source-") as tmp:
        yield write_hub_folder(source, Path(tmp) / Path(source).stem)
