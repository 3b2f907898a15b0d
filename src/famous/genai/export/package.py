"""``famous build``: turn a Hub model directory into a famous model package that famous serves.

The package lands in ``FAMOUS_HOME/packages/NAME/``: ``model.yaml`` (one option per
recipe, sizes from the real files), ``engines/<engine>/engine.yaml`` per target, and the
artifacts under ``artifacts/``. Every artifact is registered in the catalog, so
``famous engines NAME`` / ``famous run NAME`` find the package and its installed files.

Nothing half-done: recipes and the architecture are checked before any work; everything is
written in a temporary folder next to the destination, validated with the strict manifest
loader, then renamed into place; a failure removes the folder and any catalog row.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_ENGINES = {
    # target → (engine name, runtime, summary, description)
    "gguf": (
        "cpu",
        "llamacpp",
        "llama.cpp on any 64-bit CPU",
        "llama.cpp running the GGUF famous built, on the CPU.",
    ),
    "executorch": (
        "executorch-cpu",
        "executorch",
        "ExecuTorch (XNNPACK) on any 64-bit CPU",
        "famous's pipeline running the ExecuTorch program famous built (prefill and "
        "decode methods, XNNPACK-delegated), on the CPU.",
    ),
    "litert": (
        "litert-cpu",
        "litert",
        "LiteRT (XNNPACK) on any 64-bit CPU",
        "famous's pipeline running the LiteRT model famous built (prefill and decode "
        "signatures, XNNPACK delegate), on the CPU.",
    ),
}
EDGE_TARGETS = {"executorch": ("pte", "pte"), "litert": ("tflite", "tflite")}  # suffix, format
DEFAULT_RECIPES = {"gguf": "q8_0", "executorch": "fp32", "litert": "fp32"}
EDGE_MAX_SEQ_LEN = 1024  # KV-cache slots of an edge build (its inputs and outputs each call)
# tokenizer and config files an edge engine needs next to its program
EDGE_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
ENGINE_OVERHEAD = 256 << 20  # llama.cpp's runtime besides weights and KV cache (~250 MiB)


class BuildError(RuntimeError):
    """A build that cannot be done; ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class BuiltOption:
    name: str
    recipe: str
    quantization: str
    path: str
    size_bytes: int
    tensor_types: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    side_files: list[str] = field(default_factory=list)  # tokenizer, signatures.json …


@dataclass
class BuiltPackage:
    name: str
    directory: str
    target: str
    engine: str
    source: str
    options: list[BuiltOption]

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def package_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "model"


def _resolve_source(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BuildError(f"{path} has no config.json: SOURCE must be a Hub model folder", 4)
        return path
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        try:
            from famous.hub.pull import pull
        except ImportError as e:  # pragma: no cover
            raise BuildError(f"{source} is not a folder and the Hub client is unavailable") from e
        try:
            result = pull(source, engine="native-cpu")
        except Exception as e:
            hint = getattr(e, "hint", "")
            raise BuildError(
                f"could not fetch {source}: {e}{'; ' + hint if hint else ''}", 4
            ) from e
        folder = Path(result.artifact.path)
        return folder if folder.is_dir() else folder.parent
    raise BuildError(
        f"{source}: no such folder (SOURCE is a model folder or a Hub repo id ORG/NAME)", 4
    )


def _shape(model_dir: Path, hf: dict[str, Any]) -> dict[str, Any]:
    from famous.genai.config import load_config
    from famous.genai.export.safetensors_stream import scan

    cfg = load_config(model_dir)
    a0 = cfg.blocks[0].attention
    params = 0
    for t in scan(model_dir).values():
        n = 1
        for d in t.shape:
            n *= d
        params += n
    return {
        "parameters": params,
        "layers": cfg.num_hidden_layers,
        "kv-heads": a0.num_key_value_heads,
        "head-dim": a0.head_dim,
        "context": min(4096, cfg.max_position_embeddings),
        "max-context": cfg.max_position_embeddings,
        "architecture": str(hf.get("model_type")),
    }


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def build_package(
    source: str | Path,
    *,
    target: str = "gguf",
    recipes: list[str] | None = None,
    name: str | None = None,
    force: bool = False,
    progress: Any = None,
    prefill_lengths: list[int] | None = None,
    max_seq_len: int | None = None,
) -> BuiltPackage:
    """Build ``source`` for ``target`` with each recipe; return what was installed.

    ``prefill_lengths`` / ``max_seq_len`` (executorch, litert): the prefill signatures and
    the KV-cache slots of the program (defaults: 8 … 1024 that fit, and
    ``min(1024, max_position_embeddings)``)."""
    from famous.genai.config import read_config_json
    from famous.genai.quantize.recipe import RecipeError, get_recipe
    from famous.manifests.loader import builtin_package_names, load_package, user_packages_dir

    if target not in TARGET_ENGINES:
        raise BuildError(
            f"target {target!r} is not available: famous builds {', '.join(TARGET_ENGINES)}",
            2,
        )
    recipes = recipes or [DEFAULT_RECIPES[target]]
    try:
        resolved = [get_recipe(r) for r in recipes]
        for r in resolved:
            if target in EDGE_TARGETS:
                _check_edge_recipe(r, target)
            else:
                r.check_target(target)
    except RecipeError as e:
        raise BuildError(str(e), 2) from e
    if target in EDGE_TARGETS:
        _check_edge_runtime(target)
    option_names = [package_name(r.name) for r in resolved]
    if len(set(option_names)) != len(option_names):
        raise BuildError(f"the same recipe is named twice: {recipes}", 2)
    model_dir = _resolve_source(str(source))
    hf = read_config_json(model_dir)
    from famous.genai.errors import UnsupportedModelError
    from famous.genai.export.gguf import _arch_for

    try:
        if target in EDGE_TARGETS:
            from famous.genai.models import family_for

            family_for(hf)
        else:
            _arch_for(str(hf.get("model_type")))
    except UnsupportedModelError as e:
        raise BuildError(str(e), 3) from e
    edge_plan = _edge_plan(hf, prefill_lengths, max_seq_len) if target in EDGE_TARGETS else None
    name = package_name(name or model_dir.resolve().name)
    if not _NAME_OK.match(name):
        raise BuildError(f"{name!r} is not a package name (lower case letters, digits, . _ -)", 2)
    if name in builtin_package_names():
        raise BuildError(f"{name!r} is a built-in package; pick another --name", 2)
    root = user_packages_dir()
    dest = root / name
    if dest.exists() and not force:
        raise BuildError(f"{dest} exists; pass --force to replace it", 1)

    engine, runtime, summary, description = TARGET_ENGINES[target]
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".build-{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    tmp = work / name
    built: list[BuiltOption] = []
    try:
        from famous.genai.quantize.report import export_recipe_gguf

        for recipe, opt in zip(resolved, option_names, strict=True):
            if edge_plan is not None:
                built.append(_build_edge(model_dir, tmp, name, opt, recipe, target, edge_plan))
                continue
            filename = f"{name}-{opt}.gguf"
            result = export_recipe_gguf(model_dir, tmp / "artifacts" / filename, recipe)
            built.append(
                BuiltOption(
                    name=opt,
                    recipe=recipe.name,
                    quantization=recipe.gguf_outtype().upper(),
                    path=f"artifacts/{filename}",
                    size_bytes=result.size_bytes,
                    tensor_types=result.type_counts(),
                    warnings=list(result.warnings)
                    + [f"{k}: {v}" for k, v in result.fallbacks.items()],
                )
            )
        model_yaml = {
            "name": name,
            "description": f"Built by famous from {model_dir.resolve().name} "
            f"({hf.get('model_type')}); recipes: {', '.join(r.name for r in resolved)}.",
            "license": _license(model_dir),
            "capabilities": ["text"],
            "shape": _shape(model_dir, hf),
            "options": {
                b.name: {
                    "repo": f"local/{name}",
                    "format": EDGE_TARGETS[target][1] if target in EDGE_TARGETS else target,
                    "quantization": b.quantization,
                    "files": [b.path, *b.side_files],
                    "size": b.size_bytes,
                }
                for b in built
            },
        }
        if edge_plan is not None:
            model_yaml["shape"]["context"] = edge_plan["max_seq_len"]
        _write_yaml(tmp / "model.yaml", model_yaml)
        _write_yaml(
            tmp / "engines" / engine / "engine.yaml",
            {
                "name": engine,
                "summary": summary,
                "description": description,
                "vendor": "famous",
                "runtime": runtime,
                "devices": {
                    "anyof": [
                        {"type": "cpu", "architecture": "amd64"},
                        {"type": "cpu", "architecture": "arm64"},
                    ]
                },
                "memory": ENGINE_OVERHEAD
                if edge_plan is None
                else _edge_memory(model_dir, edge_plan),
                "model-options": [b.name for b in built],
                "default-model-option": built[0].name,
                "configuration": {"context-size": model_yaml["shape"]["context"]}
                if edge_plan is None
                else {
                    "context-size": edge_plan["max_seq_len"],
                    "prefill-lengths": ",".join(str(n) for n in edge_plan["prefill_lengths"]),
                },
            },
        )
        (tmp / "build.json").write_text(
            json.dumps(
                {
                    "source": str(model_dir.resolve()),
                    "target": target,
                    "recipes": [r.model_dump() for r in resolved],
                    **({"signatures": edge_plan} if edge_plan is not None else {}),
                },
                indent=2,
            )
        )
        load_package(tmp)  # strict validation: a package famous cannot load is never installed
        _install(tmp, dest, name, force)
        try:
            _register(dest, name, engine, target, built, str(model_dir.resolve()))
        except BaseException:
            with contextlib.suppress(Exception):
                from famous.store.artifacts import remove_artifacts

                remove_artifacts(name, force=True)
            shutil.rmtree(dest, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for b in built:
        b.path = str(dest / b.path)
    return BuiltPackage(name, str(dest), target, engine, str(model_dir), built)


def _install(tmp: Path, dest: Path, name: str, force: bool) -> None:
    """Rename the finished package into place (replacing an old one with ``force``)."""
    old = None
    if dest.exists():
        if not force:
            raise BuildError(f"{dest} exists; pass --force to replace it", 1)
        from famous.store.artifacts import remove_artifacts

        # Refuses while a deployment uses it (ArtifactInUse); removing a built package's
        # last artifact also removes its folder, so the old one may be gone already.
        remove_artifacts(name)
        if dest.exists():
            old = dest.with_name(f".old-{name}-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _register(
    dest: Path, name: str, engine: str, target: str, built: list[BuiltOption], source: str
) -> None:
    from famous.store.artifacts import ArtifactFile, file_sha256, register_artifact

    for b in built:
        path = dest / b.path
        meta: dict[str, object] = {
            "package": name,
            "quantization": b.quantization,
            "recipe": b.recipe,
            "built_from": source,
            "tensor_types": b.tensor_types,
        }
        if target == "gguf":
            with contextlib.suppress(Exception):
                from famous.hub.formats import read_gguf_header

                meta["gguf"] = read_gguf_header(path).model_dump(exclude_none=True)
        register_artifact(
            model=name,
            engine=engine,
            variant=b.name,
            format=EDGE_TARGETS[target][1] if target in EDGE_TARGETS else target,
            path=path,
            root=path.parent,
            files=[
                ArtifactFile(
                    relpath=p.name,
                    size_bytes=p.stat().st_size,
                    sha256=file_sha256(p),
                    mtime_ns=p.stat().st_mtime_ns,
                )
                for p in [path, *(dest / f for f in b.side_files)]
            ],
            source="build",
            owned=True,
            repo_id=f"local/{name}",
            metadata=meta,
        )


# ------------------------------------------------------------------ executorch / litert


def _check_edge_recipe(recipe: Any, target: str) -> None:
    """Edge targets build fp32 programs (XNNPACK's quantized kernels are not wired yet)."""
    from famous.genai.quantize.recipe import RecipeError

    if recipe.gguf_type or any(s.dtype != "fp32" for s in recipe.specs()):
        raise RecipeError(
            f"recipe {recipe.name!r} quantizes weights; famous builds {target} programs in "
            "fp32 (XNNPACK's int8 / int4 kernels are not wired in this build): use "
            f"--quant fp32, or --target gguf / torch for quantized engines"
        )


def _check_edge_runtime(target: str) -> None:
    if target == "executorch":
        from famous.genai.export.executorch import ExecuTorchUnavailable, _require

        try:
            _require()
        except ExecuTorchUnavailable as e:
            raise BuildError(str(e), 5) from e
    else:
        from famous.genai.export.litert import CONVERTER_HINT, converter_available

        if not converter_available():
            raise BuildError(f"litert-torch is not available: {CONVERTER_HINT}", 5)


def _edge_plan(
    hf: dict[str, Any], prefill_lengths: list[int] | None, max_seq_len: int | None
) -> dict[str, Any]:
    from famous.genai.export.signatures import DEFAULT_PREFILL_LENGTHS, check_prefill_lengths

    cap = int(max_seq_len or min(EDGE_MAX_SEQ_LEN, int(hf.get("max_position_embeddings", 2048))))
    lengths = prefill_lengths or [n for n in DEFAULT_PREFILL_LENGTHS if n <= cap] or [cap]
    try:
        lengths = check_prefill_lengths(lengths, cap)
    except ValueError as e:
        raise BuildError(str(e), 2) from e
    return {"max_seq_len": cap, "prefill_lengths": lengths}


def _build_edge(
    model_dir: Path,
    tmp: Path,
    name: str,
    opt: str,
    recipe: Any,
    target: str,
    plan: dict[str, Any],
) -> BuiltOption:
    suffix = EDGE_TARGETS[target][0]
    out = tmp / "artifacts" / f"{name}-{opt}.{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if target == "executorch":
        from famous.genai.export.executorch import export_executorch, meta_path
        from famous.genai.loader import load_model

        model = load_model(model_dir, "fp32", plan["max_seq_len"])
        export_executorch(model, out, plan["prefill_lengths"])
        del model
    else:
        from famous.genai.export.litert import export_litert, meta_path

        export_litert(model_dir, out, plan["prefill_lengths"], max_seq_len=plan["max_seq_len"])
    side = [meta_path(out)]
    for f in EDGE_SIDE_FILES:
        src = model_dir / f
        if src.is_file() and not (out.parent / f).exists():
            shutil.copy2(src, out.parent / f)
        if (out.parent / f).is_file():
            side.append(out.parent / f)
    return BuiltOption(
        name=opt,
        recipe=recipe.name,
        quantization="fp32",
        path=f"artifacts/{out.name}",
        size_bytes=out.stat().st_size,
        side_files=[f"artifacts/{p.name}" for p in side],
    )


def _edge_memory(model_dir: Path, plan: dict[str, Any]) -> int:
    """Runtime memory besides the program: the KV cache, in and out (fp32), plus overhead."""
    from famous.genai.config import load_config

    cfg = load_config(model_dir)
    kv = sum(
        2 * b.attention.num_key_value_heads * plan["max_seq_len"] * b.attention.head_dim * 4
        for b in cfg.blocks
    )
    return ENGINE_OVERHEAD + 2 * kv


def _license(model_dir: Path) -> str:
    readme = model_dir / "README.md"
    if readme.is_file():
        m = re.search(
            r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="replace"), re.M
        )
        if m:
            return m.group(1)
    return "unknown"
