"""What a repo holds, from its file names (and, for GGUF, the file header).

Detection is by name first so nothing is downloaded to decide; a GGUF header (read from a
downloaded file or a Range-fetched prefix) then gives the architecture and shape exactly.
"""

from __future__ import annotations

import fnmatch
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from famous.formats import gguf_meta
from famous.formats.projector import choose_projector

GGUF_QUANT = re.compile(
    r"(?i)(?<![A-Za-z0-9])("
    r"IQ[1-4]_(?:XXS|XS|S|M|NL|L)|I?Q[2-8]_K(?:_(?:XL|S|M|L))?|Q[4-8]_[01]|Q4_0_\d_\d|"
    r"TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32|FP16|FP32"
    r")(?=[.\-_]|$)"
)
GGUF_SHARD = re.compile(r"^(?P<base>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$", re.IGNORECASE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Files an engine needs beside the weights (never code: *.py is not fetched).
COMPANIONS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


class Variant(BaseModel):
    """One downloadable variant found in a repo: what the engines' model options become."""

    name: str = Field(description="option name: q4_k_m, bf16, mlx-4bit, openvino-int4, …")
    format: str
    quantization: str
    files: list[str]
    size: int


def glob_match(path: str, pattern: str) -> bool:
    """Case-insensitive glob on the whole repo path, or on the basename for bare patterns."""
    p, pat = path.lower(), pattern.lower()
    return fnmatch.fnmatchcase(p, pat) or (
        "/" not in pat and fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pat)
    )


def gguf_quant(filename: str) -> str | None:
    """Q4_K_M from ``qwen2.5-0.5b-instruct-q4_k_m.gguf``; None when the name does not say."""
    stem = filename.rsplit("/", 1)[-1]
    stem = GGUF_SHARD.sub(lambda m: m["base"] + ".gguf", stem)
    matches = GGUF_QUANT.findall(stem)
    if not matches:
        return None
    quant = matches[-1].upper()
    return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)


def gguf_groups(paths: Iterable[str]) -> dict[str, list[str]]:
    """GGUF files grouped so a sharded model (``-00001-of-00003``) is one entry, whole."""
    groups: dict[str, list[str]] = {}
    for path in sorted(paths):
        if not path.lower().endswith(".gguf"):
            continue
        m = GGUF_SHARD.match(path)
        key = m["base"] if m else path
        groups.setdefault(key, []).append(path)
    return groups


def projector_for(model: str, sizes: Mapping[str, int]) -> str | None:
    """The projector (``mmproj-*.gguf``) that rides along with the GGUF ``model`` of a repo:
    one in its folder (where llama-server's launch looks), ``choose_projector``'s pick."""
    folder = model.rsplit("/", 1)[0] + "/" if "/" in model else ""
    here = {p: n for p, n in sizes.items() if p.startswith(folder)}
    return choose_projector({p: n for p, n in here.items() if "/" not in p[len(folder) :]})


def is_pickle(path: str) -> bool:
    low = path.lower()
    if low.endswith(".bin") and ("openvino" in low or low.rsplit("/", 1)[-1].startswith("ov_")):
        return False
    return low.endswith(PICKLE_SUFFIXES) and not low.endswith("training_args.bin")


def classify(paths: Iterable[str]) -> dict[str, list[str]]:
    """Files by format (gguf, safetensors, openvino, onnx, tflite, pte, pickle)."""
    out: dict[str, list[str]] = {}
    paths = list(paths)
    xml = {p[: -len(".xml")] for p in paths if p.lower().endswith(".xml")}
    for path in sorted(paths):
        low = path.lower()
        if low.endswith(".gguf"):
            kind = "gguf"
        elif low.endswith(".safetensors"):
            kind = "safetensors"
        elif low.endswith(".xml") or (low.endswith(".bin") and path[: -len(".bin")] in xml):
            kind = "openvino"
        elif low.endswith((".onnx", ".onnx_data", ".onnx.data")):
            kind = "onnx"
        elif low.endswith(".tflite"):
            kind = "tflite"
        elif low.endswith(".pte"):
            kind = "pte"
        elif is_pickle(path):
            kind = "pickle"
        else:
            continue
        out.setdefault(kind, []).append(path)
    return out


def companions(paths: Iterable[str], folder: str = "") -> list[str]:
    """Config and tokenizer files next to the weights (in ``folder``), never code."""
    wanted = {f"{folder}{c}" if folder else c for c in COMPANIONS}
    return sorted(p for p in paths if p in wanted)


# -- GGUF header ------------------------------------------------------------------------------

_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


class GgufHeader(BaseModel):
    """The parts of a GGUF header famous uses (architecture, quantization, shape)."""

    version: int
    tensor_count: int
    architecture: str | None = None
    name: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    embedding_length: int | None = None
    key_length: int | None = None
    complete: bool = Field(description="False when only a prefix of the header was available")


def quantization_name(file_type: object) -> str | None:
    """``general.file_type``'s name (``Q4_K_M``, ``F16``…), None when unknown."""
    return _FILE_TYPES.get(file_type) if isinstance(file_type, int) else None


def parse_gguf_header(data: bytes) -> GgufHeader:
    """Parse the metadata at the start of a GGUF file; a truncated prefix gives what it has."""
    try:
        kv = gguf_meta.read_metadata(io.BytesIO(data), partial=True)
    except gguf_meta.GGUFError as exc:
        raise ValueError(str(exc)) from exc
    arch = gguf_meta.architecture(kv)
    prefix = f"{arch}." if arch else ""

    def num(key: str) -> int | None:
        value = kv.get(prefix + key)
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    file_type = kv.get("general.file_type")
    name = kv.get("general.name")
    return GgufHeader(
        version=kv["GGUF.version"],
        tensor_count=kv["GGUF.tensor_count"],
        architecture=arch,
        name=name if isinstance(name, str) else None,
        quantization=quantization_name(file_type),
        context_length=num("context_length"),
        block_count=num("block_count"),
        head_count=num("attention.head_count"),
        head_count_kv=num("attention.head_count_kv"),
        embedding_length=num("embedding_length"),
        key_length=num("attention.key_length"),
        complete=kv["GGUF.complete"],
    )


def read_gguf_header(path: Path, limit: int = 64 << 20) -> GgufHeader:
    """The header of a GGUF file on disk (reads at most ``limit`` bytes)."""
    with open(path, "rb") as f:
        return parse_gguf_header(f.read(limit))
