"""A model package for a Hub repo that has no built-in one, from the repo's file listing.

The variants found (each GGUF quantization, the safetensors set, MLX, OpenVINO IR, …) become
model options; the engine templates in ``famous/packages/_generic`` that run those formats
become its engines. The matchmaker then treats it like any built-in package.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from famous.formats.projector import is_projector
from famous.hub.client import RepoListing
from famous.hub.errors import NoUsableFormat, PickleRefused
from famous.hub.formats import (
    GgufHeader,
    Variant,
    classify,
    companions,
    gguf_groups,
    gguf_quant,
    projector_for,
)
from famous.hub.names import package_name_for_repo
from famous.manifests.schema import EngineManifest, ModelManifest, ModelPackage, ModelShape

_BITS = {
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "Q8_0": 8.5,
    "Q6_K": 6.6,
    "Q5_K_M": 5.7,
    "Q5_K_S": 5.5,
    "Q5_0": 5.5,
    "Q5_1": 6,
    "Q4_K_M": 4.9,
    "Q4_K_S": 4.6,
    "Q4_0": 4.5,
    "Q4_1": 5,
    "IQ4_XS": 4.3,
    "IQ4_NL": 4.5,
    "Q3_K_M": 3.9,
    "Q3_K_S": 3.5,
    "Q3_K_L": 4.3,
    "Q2_K": 3.4,
    "MXFP4": 4.25,
}
_DTYPE_BYTES = {"float32": 4, "f32": 4, "float16": 2, "f16": 2, "bfloat16": 2, "bf16": 2}
_NEEDS = {
    "onnx": "an ONNX Runtime engine, which famous does not have yet",
    "pickle": "--allow-pickle (pickle checkpoints can run code when loaded)",
}


def templates_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "packages" / "_generic"


def load_templates() -> list[dict[str, Any]]:
    out = []
    for file in sorted(templates_dir().glob("*.yaml")):
        data = yaml.safe_load(file.read_text())
        data["_file"] = str(file)
        out.append(data)
    return out


def _escape(name: str) -> str:
    """An exact file name as a glob pattern (``[`` would otherwise be a character class)."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def _dtype_name(config: dict[str, Any]) -> str:
    q = config.get("quantization_config")
    if isinstance(q, dict):
        method = str(q.get("quant_method", "quantized")).lower()
        bits = q.get("bits") or (4 if method in ("awq", "gptq") else None)
        return f"int{bits}-{method}" if bits else method
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bf16").lower()
    return {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}.get(dtype, dtype)


def _is_mlx(listing: RepoListing, config: dict[str, Any]) -> bool:
    if listing.library_name == "mlx" or "mlx" in listing.tags:
        return True
    q = config.get("quantization")
    return isinstance(q, dict) and "group_size" in q and "quantization_config" not in config


def find_variants(listing: RepoListing, config: dict[str, Any] | None = None) -> list[Variant]:
    """Every variant of the repo an engine could fetch, with its exact files and size."""
    config = config or {}
    sizes = {f.path: f.size for f in listing.files}
    paths = listing.paths()
    kinds = classify(paths)
    variants: list[Variant] = []
    names: set[str] = set()

    def add(name: str, fmt: str, quant: str, files: list[str]) -> None:
        base, n = name, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        variants.append(
            Variant(
                name=name,
                format=fmt,
                quantization=quant,
                files=files,
                size=sum(sizes.get(f, 0) for f in files),
            )
        )

    groups = gguf_groups(p for p in kinds.get("gguf", []) if not is_projector(p))
    for key, files in sorted(groups.items(), key=lambda kv: sum(sizes[f] for f in kv[1])):
        quant = gguf_quant(files[0]) or "gguf"
        projector = projector_for(files[0], sizes)  # every variant sees with the same one
        add(
            quant.lower() if quant != "gguf" else Path(key).stem.lower()[:40] or "gguf",
            "gguf",
            quant,
            files + ([projector] if projector else []),
        )
    weights = kinds.get("safetensors", [])
    if weights:
        folders = sorted({w.rsplit("/", 1)[0] + "/" if "/" in w else "" for w in weights}, key=len)
        folder = folders[0]
        chosen = [w for w in weights if (w.rsplit("/", 1)[0] + "/" if "/" in w else "") == folder]
        extra = [p for p in paths if p.startswith(folder) and p.endswith(".safetensors.index.json")]
        files = sorted(set(chosen + extra + companions(paths, folder)))
        if _is_mlx(listing, config):
            q = config.get("quantization")
            quant = (
                f"{q['bits']}bit" if isinstance(q, dict) and q.get("bits") else _dtype_name(config)
            )
            add(f"mlx-{quant}", "mlx", quant, files)
        else:
            quant = _dtype_name(config)
            add(quant, "safetensors", quant, files)
    if kinds.get("openvino"):
        low = listing.repo_id.lower()
        quant = next((q for q in ("int4", "int8", "fp16", "fp32") if q in low), "ir")
        files = sorted(
            set(kinds["openvino"] + [p for p in paths if p.endswith(".json") and "/" not in p])
        )
        add(f"openvino-{quant}" if quant != "ir" else "openvino", "openvino", quant, files)
    for fmt in ("onnx", "tflite", "pte"):
        if kinds.get(fmt):
            add(fmt, fmt, fmt, sorted(set(kinds[fmt] + companions(paths))))
    return variants


def _active_parameters(text: dict[str, Any], params: int, layers: int) -> int | None:
    """What a token of a mixture-of-experts model reads: the total less the experts it skips
    (each expert a gated MLP: 3 × hidden × expert width); None for a dense model."""
    experts = next(
        (text[k] for k in ("num_experts", "num_local_experts", "n_routed_experts") if text.get(k)),
        None,
    )
    routed = text.get("num_experts_per_tok") or text.get("experts_per_token")
    hidden = text.get("hidden_size")
    width = text.get("moe_intermediate_size") or text.get("intermediate_size")
    if not (experts and routed and hidden and width) or int(routed) >= int(experts):
        return None
    moe_layers = layers - int(text.get("first_k_dense_replace") or 0)
    skipped = moe_layers * 3 * int(hidden) * int(width) * (int(experts) - int(routed))
    return max(params - skipped, 1) if skipped < params else None


def estimate_shape(
    listing: RepoListing,
    variants: list[Variant],
    config: dict[str, Any] | None = None,
    header: GgufHeader | None = None,
) -> ModelShape:
    """The shape the memory estimate needs: from config.json, a GGUF header, else the name."""
    config = config or {}
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    params = None
    smallest = min(variants, key=lambda v: v.size) if variants else None
    if smallest is not None and smallest.size > 0:
        if smallest.format == "gguf":
            bits = _BITS.get(smallest.quantization.upper(), 5.0)
            params = int(smallest.size * 8 / bits)
        elif smallest.format in ("safetensors",):
            params = int(smallest.size / _DTYPE_BYTES.get(smallest.quantization, 2))
    m = re.search(
        r"(?i)(?<![\w.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])",
        listing.repo_id.split("/")[-1].replace("-", " ").replace("_", " "),
    )
    if m:
        named = float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)
        params = params or int(named)
    params = max(int(params or 1e9), 1)
    layers = text.get("num_hidden_layers") or text.get("n_layer") or (header and header.block_count)
    heads = text.get("num_attention_heads") or text.get("n_head") or (header and header.head_count)
    kv = text.get("num_key_value_heads") or (header and header.head_count_kv) or heads
    hidden = text.get("hidden_size") or text.get("n_embd") or (header and header.embedding_length)
    head_dim = text.get("head_dim") or (header and header.key_length)
    if not head_dim and hidden and heads:
        head_dim = int(hidden) // int(heads)
    max_ctx = text.get("max_position_embeddings") or (header and header.context_length)
    if not layers:  # rough guesses by size, erring on the large side for the KV estimate
        layers = 24 if params < 1e9 else 32 if params < 10e9 else 48 if params < 40e9 else 80
    return ModelShape(
        parameters=params,
        active_parameters=_active_parameters(text, params, int(layers)),
        layers=int(layers),
        kv_heads=int(kv or 8),
        head_dim=int(head_dim or 128),
        context=int(min(4096, int(max_ctx))) if max_ctx else 4096,
        max_context=int(max_ctx) if max_ctx else None,
        architecture=str(text.get("model_type") or (header and header.architecture) or "") or None,
    )


def _capabilities(listing: RepoListing) -> list[str]:
    tags = set(listing.tags)
    if (
        listing.library_name == "sentence-transformers"
        or {"sentence-transformers", "feature-extraction", "sentence-similarity"} & tags
    ):
        return ["embedding"]
    caps = ["text"]
    if "image-text-to-text" in tags or any(is_projector(p) for p in listing.paths()):
        caps.append("vision")
    return caps


def _license(listing: RepoListing) -> str:
    return next((t.split(":", 1)[1] for t in listing.tags if t.startswith("license:")), "unknown")


def synthesize_package(
    listing: RepoListing,
    *,
    config: dict[str, Any] | None = None,
    header: GgufHeader | None = None,
    allow_pickle: bool = False,
    endpoint: str = "https://huggingface.co",
) -> ModelPackage:
    """A ModelPackage for ``listing``'s repo; NoUsableFormat / PickleRefused when none fits."""
    variants = find_variants(listing, config)
    kinds = classify(listing.paths())
    if not variants and kinds.get("pickle"):
        if not allow_pickle:
            raise PickleRefused(listing.repo_id, kinds["pickle"])
        weights = [p for p in kinds["pickle"] if "/" not in p] or kinds["pickle"]
        files = sorted(set(weights + companions(listing.paths())))
        sizes = {f.path: f.size for f in listing.files}
        quant = _dtype_name(config or {})
        variants.append(
            Variant(
                name=f"{quant}-pickle",
                format="pytorch",
                quantization=f"{quant}-pickle",
                files=files,
                size=sum(sizes.get(f, 0) for f in files),
            )
        )
    templates = load_templates()
    engines: dict[str, EngineManifest] = {}
    model_type = (config or {}).get("model_type")
    for template in templates:
        usable = [v for v in variants if v.format in template.get("formats", [])]
        runs = template.get("model-types")  # engines that re-author only some architectures
        if runs and model_type not in runs:
            usable = [v for v in usable if v.format not in ("safetensors", "pytorch")]
        if not usable:
            continue
        prefer = [p.lower() for p in template.get("prefer", [])]
        ranked = sorted(
            usable,
            key=lambda v: (prefer.index(v.name) if v.name in prefer else len(prefer), v.size),
        )
        data = dict(template["engine"])
        data["model-options"] = [v.name for v in usable]
        data["default-model-option"] = ranked[0].name
        engine = EngineManifest.model_validate(data)
        engines[engine.name] = engine
    if not engines:
        found = {k: v for k, v in kinds.items()}
        needs = {
            k: _NEEDS.get(k, f"an engine for {k} (none of famous's templates runs it)")
            for k in found
        }
        raise NoUsableFormat(listing.repo_id, found, needs)
    shape = estimate_shape(listing, variants, config, header)
    options = {
        v.name: {
            "repo": listing.repo_id,
            "format": v.format,
            "quantization": v.quantization,
            "files": [_escape(f) for f in v.files],
            "size": v.size,
        }
        for v in variants
        if any(v.name in e.model_options for e in engines.values())
    }
    model = ModelManifest.model_validate(
        {
            "name": package_name_for_repo(listing.repo_id),
            "description": f"{listing.repo_id} from the Hugging Face Hub (package synthesized "
            f"from its files at {listing.revision[:12]}; shape estimated)",
            "model-card": f"{endpoint}/{listing.repo_id}",
            "license": _license(listing),
            "capabilities": _capabilities(listing),
            "shape": shape.model_dump(by_alias=True, exclude_none=True),
            "options": options,
        }
    )
    return ModelPackage(model=model, engines=engines, source=f"hub:{listing.repo_id}")


def config_from_bytes(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def matching(paths: list[str], patterns: list[str]) -> list[str]:
    from famous.hub.formats import glob_match

    return sorted(p for p in paths if any(glob_match(p, pat) for pat in patterns))
