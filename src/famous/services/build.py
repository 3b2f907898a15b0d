"""``famous build``: turn a Hub model directory into a famous model package that famous serves.

The package lands in ``FAMOUS_HOME/packages/NAME/``: ``model.yaml`` (one option per
recipe, sizes from the real files), ``engines/<engine>/engine.yaml`` per target, and the
artifacts under ``artifacts/``. Every artifact is registered in the catalog, so
``famous engines NAME`` / ``famous run NAME`` find the package and its installed files.

Nothing half-done: recipes and the architecture are checked before any work; everything is
written in a temporary folder next to the destination, validated with the strict manifest
loader, then renamed into place; a failure removes the folder and any catalog row.

The model work (GGUF writing, quantization, edge programs) is ``famous.genai``'s; this module
fetches the source, writes the manifests, installs and registers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from famous.errors import FamousError, InvalidInput, NotFound
from famous.manifests.schema import EngineManifest, ModelManifest

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
DEFAULT_RECIPES = {"gguf": "q8_0", "executorch": "fp32", "litert": "fp32"}
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
ENGINE_OVERHEAD = 256 << 20  # llama.cpp's runtime besides weights and KV cache (~250 MiB)
CPU_DEVICES = {
    "anyof": [
        {"type": "cpu", "architecture": "amd64"},
        {"type": "cpu", "architecture": "arm64"},
    ]
}


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
    quantizer: str = ""  # edge: the backend quantizer the recipe ran ("" = none)
    parity: dict[str, Any] = field(default_factory=dict)  # edge: KL / top-1 / tok/s vs fp32


@dataclass
class BuiltPackage:
    name: str
    directory: str
    target: str
    engine: str
    source: str
    options: list[BuiltOption]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Build:
    """Everything checked before any work: what to build, from where, to where."""

    name: str
    target: str
    recipes: list[Any]  # gguf: quantize.recipe.Recipe; edge: export.edge.EdgeRecipe
    option_names: list[str]
    model_dir: Path
    hf: dict[str, Any]
    edge: Any  # famous.genai.export.edge.SignaturePlan, None for gguf
    root: Path
    dest: Path

    @property
    def engine(self) -> tuple[str, str, str, str]:
        return TARGET_ENGINES[self.target]

    @property
    def format(self) -> str:
        from famous.genai.export.edge import EDGE_FORMATS

        return EDGE_FORMATS.get(self.target, self.target)


def package_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "model"


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
    with managed_converter(target):
        build = _plan(source, target, recipes, name, force, prefill_lengths, max_seq_len)
        build.root.mkdir(parents=True, exist_ok=True)
        work = build.root / f".build-{build.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        tmp = work / build.name
        try:
            built = [
                _build_option(build, tmp, r, o)
                for r, o in zip(build.recipes, build.option_names, strict=True)
            ]
            _write_package(build, tmp, built)
            _install(tmp, build.dest, build.name, force)
            try:
                _register(build, built)
            except BaseException:
                from famous.store.artifacts import remove_artifacts

                with contextlib.suppress(Exception):
                    remove_artifacts(build.name, force=True)
                shutil.rmtree(build.dest, ignore_errors=True)
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for b in built:
            b.path = str(build.dest / b.path)
        return BuiltPackage(
            build.name, str(build.dest), target, build.engine[0], str(build.model_dir), built
        )


@contextlib.contextmanager
def managed_converter(target: str) -> Iterator[str | None]:
    """For a LiteRT build with no ``FAMOUS_LITERT_PYTHON`` set, the converter environment
    ``famous install-component litert`` made (named in that variable for the build's
    duration, as famous.genai reads it); yields the interpreter it set, if any."""
    from famous.runtimes.environments import installed_environment

    variable = "FAMOUS_LITERT_PYTHON"
    managed = installed_environment("litert", "cpu") if target == "litert" else None
    if managed is None or os.environ.get(variable):
        yield None
        return
    os.environ[variable] = str(managed.python)
    try:
        yield str(managed.python)
    finally:
        os.environ.pop(variable, None)


def _plan(
    source: str | Path,
    target: str,
    recipes: list[str] | None,
    name: str | None,
    force: bool,
    prefill_lengths: list[int] | None,
    max_seq_len: int | None,
) -> _Build:
    """Refuse what cannot be built before any work (or any download)."""
    from famous.genai.export.edge import check_edge_runtime, plan_signatures
    from famous.genai.hf_config import read_config_json
    from famous.manifests.loader import builtin_package_names, user_packages_dir

    if target not in TARGET_ENGINES:
        raise InvalidInput(
            f"target {target!r} is not available: famous builds {', '.join(TARGET_ENGINES)}"
        )
    resolved = _check_recipes(target, recipes or [DEFAULT_RECIPES[target]])
    edge = target != "gguf"
    if edge:
        if prefill_lengths and max_seq_len:  # the lengths asked for fit, whatever the model
            _signature_plan(plan_signatures, {}, prefill_lengths, max_seq_len)
        check_edge_runtime(target)
    option_names = [package_name(r.name) for r in resolved]
    if len(set(option_names)) != len(option_names):
        raise InvalidInput(f"the same recipe is named twice: {recipes}")
    model_dir = _resolve_source(str(source))
    hf = read_config_json(model_dir)
    _check_architecture(target, hf)
    plan = _signature_plan(plan_signatures, hf, prefill_lengths, max_seq_len) if edge else None
    name = package_name(name or model_dir.resolve().name)
    if not _NAME_OK.match(name):
        raise InvalidInput(f"{name!r} is not a package name (lower case letters, digits, . _ -)")
    if name in builtin_package_names():
        raise InvalidInput(f"{name!r} is a built-in package; pick another --name")
    root = user_packages_dir()
    dest = root / name
    if dest.exists() and not force:
        raise FamousError(f"{dest} exists; pass --force to replace it")
    return _Build(name, target, resolved, option_names, model_dir, hf, plan, root, dest)


def _check_recipes(target: str, recipes: list[str]) -> list[Any]:
    """The recipes resolved for ``target`` (a ``RecipeError``, an ``InvalidInput``, names
    the recipes the target builds)."""
    from famous.genai.export.edge import edge_recipe
    from famous.genai.quantize.recipe import get_recipe

    if target != "gguf":
        return [edge_recipe(r, target) for r in recipes]
    resolved = [get_recipe(r) for r in recipes]
    for r in resolved:
        r.check_target(target)
    return resolved


def _recipe_record(recipe: Any) -> dict[str, Any]:
    """What build.json keeps of a recipe: a famous recipe's fields, or an edge recipe's
    name, description and the quantizer each backend runs."""
    return recipe.model_dump() if hasattr(recipe, "model_dump") else asdict(recipe)


def _signature_plan(
    plan_signatures: Any,
    hf: dict[str, Any],
    prefill_lengths: list[int] | None,
    max_seq_len: int | None,
) -> Any:
    try:
        return plan_signatures(hf, prefill_lengths, max_seq_len)
    except ValueError as e:
        raise InvalidInput(str(e)) from e


def _check_architecture(target: str, hf: dict[str, Any]) -> None:
    """``UnsupportedModelError`` (an ``Incompatible``) when genai cannot build this model."""
    if target == "gguf":
        from famous.genai.export.gguf import check_gguf_architecture

        check_gguf_architecture(str(hf.get("model_type")))
    else:
        from famous.genai.models import family_for

        family_for(hf)


def _resolve_source(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        return _gguf_source(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise NotFound(f"{path} has no config.json: SOURCE must be a Hub model folder")
        return path
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        try:
            from famous.hub.pull import pull
        except ImportError as e:  # pragma: no cover
            raise FamousError(f"{source} is not a folder and the Hub client is unavailable") from e
        try:
            result = pull(source, engine="native-cpu")
        except Exception as e:
            hint = getattr(e, "hint", "")
            raise NotFound(f"could not fetch {source}: {e}{'; ' + hint if hint else ''}") from e
        folder = Path(result.artifact.path)
        return folder if folder.is_dir() else folder.parent
    raise NotFound(f"{source}: no such folder (SOURCE is a model folder or a Hub repo id ORG/NAME)")


def _gguf_source(path: Path) -> Path:
    """A GGUF file as the Hub folder of its dequantized weights, kept under FAMOUS_HOME
    (a package records its source folder) and reused while the file is unchanged."""
    import hashlib

    from famous.genai.gguf_source.hub_folder import write_hub_folder
    from famous.genai.gguf_source.reader import is_gguf
    from famous.store.paths import famous_home

    if not is_gguf(path):
        raise NotFound(f"{path}: SOURCE is a model folder, a GGUF file or a Hub repo id ORG/NAME")
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return write_hub_folder(path, famous_home() / "gguf-sources" / key / path.stem)


def _build_option(build: _Build, tmp: Path, recipe: Any, opt: str) -> BuiltOption:
    if build.edge is not None:
        return _build_edge_option(build, tmp, recipe, opt)
    from famous.genai.export.gguf import export_recipe_gguf

    filename = f"{build.name}-{opt}.gguf"
    result = export_recipe_gguf(build.model_dir, tmp / "artifacts" / filename, recipe)
    return BuiltOption(
        name=opt,
        recipe=recipe.name,
        quantization=recipe.gguf_outtype().upper(),
        path=f"artifacts/{filename}",
        size_bytes=result.size_bytes,
        tensor_types=result.type_counts(),
        warnings=list(result.warnings) + [f"{k}: {v}" for k, v in result.fallbacks.items()],
    )


def _build_edge_option(build: _Build, tmp: Path, recipe: Any, opt: str) -> BuiltOption:
    """Export the program, then score it in its runtime against the fp32 eager model."""
    from famous.genai.edge_quality import edge_parity
    from famous.genai.export.edge import EDGE_FORMATS, export_edge

    out = tmp / "artifacts" / f"{build.name}-{opt}.{EDGE_FORMATS[build.target]}"
    side = export_edge(build.model_dir, out, build.target, build.edge, recipe)
    return BuiltOption(
        name=opt,
        recipe=recipe.name,
        quantization=recipe.quantization,
        path=f"artifacts/{out.name}",
        size_bytes=out.stat().st_size,
        side_files=[f"artifacts/{p.name}" for p in side],
        quantizer=getattr(recipe, build.target),
        parity=edge_parity(out, build.model_dir).as_dict(),
    )


def _write_package(build: _Build, tmp: Path, built: list[BuiltOption]) -> None:
    """model.yaml, the engine manifest and build.json, then the strict loader's check."""
    from famous.manifests.loader import load_package

    model = _model_manifest(build, built)
    _write_manifest(tmp / "model.yaml", model)
    _write_manifest(
        tmp / "engines" / build.engine[0] / "engine.yaml",
        _engine_manifest(build, built, model.shape.context),
    )
    (tmp / "build.json").write_text(
        json.dumps(
            {
                "source": str(build.model_dir.resolve()),
                "target": build.target,
                "recipes": [_recipe_record(r) for r in build.recipes],
                **({"signatures": asdict(build.edge)} if build.edge is not None else {}),
                "options": {
                    b.name: {
                        "recipe": b.recipe,
                        "quantization": b.quantization,
                        "size_bytes": b.size_bytes,
                        **({"quantizer": b.quantizer} if build.edge is not None else {}),
                        **({"parity": b.parity} if b.parity else {}),
                    }
                    for b in built
                },
            },
            indent=2,
        )
    )
    load_package(tmp)  # strict validation: a package famous cannot load is never installed


def _model_manifest(build: _Build, built: list[BuiltOption]) -> ModelManifest:
    from famous.genai.export.safetensors_stream import parameter_count
    from famous.genai.models import load_config

    cfg = load_config(build.model_dir)
    a0 = cfg.blocks[0].attention
    context = min(4096, cfg.max_position_embeddings)
    return ModelManifest(
        name=build.name,
        description=f"Built by famous from {build.model_dir.resolve().name} "
        f"({build.hf.get('model_type')}); recipes: {', '.join(r.name for r in build.recipes)}.",
        license=_license(build.model_dir),
        capabilities=["text"],
        shape={
            "parameters": parameter_count(build.model_dir),
            "layers": cfg.num_hidden_layers,
            "kv_heads": a0.num_key_value_heads,
            "head_dim": a0.head_dim,
            "context": context if build.edge is None else build.edge.max_seq_len,
            "max_context": cfg.max_position_embeddings,
            "architecture": str(build.hf.get("model_type")),
        },
        options={
            b.name: {
                "repo": f"local/{build.name}",
                "format": build.format,
                "quantization": b.quantization,
                "files": [b.path, *b.side_files],
                "size": b.size_bytes,
            }
            for b in built
        },
    )


def _engine_manifest(build: _Build, built: list[BuiltOption], context: int) -> EngineManifest:
    engine, runtime, summary, description = build.engine
    if build.edge is None:
        memory = ENGINE_OVERHEAD
        configuration: dict[str, str | int] = {"context-size": context}
    else:
        from famous.genai.export.edge import kv_cache_bytes

        # the KV cache is a program input and an output (fp32), besides the runtime
        memory = ENGINE_OVERHEAD + 2 * kv_cache_bytes(build.model_dir, build.edge.max_seq_len)
        configuration = {
            "context-size": build.edge.max_seq_len,
            "prefill-lengths": ",".join(str(n) for n in build.edge.prefill_lengths),
        }
    return EngineManifest(
        name=engine,
        summary=summary,
        description=description,
        vendor="famous",
        runtime=runtime,
        devices=CPU_DEVICES,
        memory=memory,
        model_options=[b.name for b in built],
        default_model_option=built[0].name,
        configuration=configuration,
    )


def _write_manifest(path: Path, manifest: ModelManifest | EngineManifest) -> None:
    import yaml

    data = manifest.model_dump(by_alias=True, exclude_unset=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _install(tmp: Path, dest: Path, name: str, force: bool) -> None:
    """Rename the finished package into place (replacing an old one with ``force``)."""
    old = None
    if dest.exists():
        if not force:
            raise FamousError(f"{dest} exists; pass --force to replace it")
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


def _register(build: _Build, built: list[BuiltOption]) -> None:
    from famous.store.artifacts import ArtifactFile, file_sha256, register_artifact

    for b in built:
        path = build.dest / b.path
        meta: dict[str, object] = {
            "package": build.name,
            "quantization": b.quantization,
            "recipe": b.recipe,
            "built_from": str(build.model_dir.resolve()),
            "tensor_types": b.tensor_types,
            **({"quantizer": b.quantizer, "parity": b.parity} if b.parity else {}),
        }
        if build.target == "gguf":
            from famous.hub.formats import read_gguf_header

            with contextlib.suppress(Exception):
                meta["gguf"] = read_gguf_header(path).model_dump(exclude_none=True)
        register_artifact(
            model=build.name,
            engine=build.engine[0],
            variant=b.name,
            format=build.format,
            path=path,
            root=path.parent,
            files=[
                ArtifactFile(
                    relpath=p.name,
                    size_bytes=p.stat().st_size,
                    sha256=file_sha256(p),
                    mtime_ns=p.stat().st_mtime_ns,
                )
                for p in [path, *(build.dest / f for f in b.side_files)]
            ],
            source="build",
            owned=True,
            repo_id=f"local/{build.name}",
            metadata=meta,
        )


def built_source(model: str) -> tuple[Path, list[Path]]:
    """MODEL → (the checkpoint folder, the artifacts built from it).

    A folder with config.json is a checkpoint; a package famous built (a name under
    FAMOUS_HOME/packages, or its folder) points at its source through build.json."""
    from famous.genai.export.profiling import package_artifacts
    from famous.manifests.loader import user_packages_dir

    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path, package_artifacts(path)
    pkg_dir = path if path.is_dir() else None
    if pkg_dir is None:
        candidate = user_packages_dir() / model
        pkg_dir = candidate if candidate.is_dir() else None
    if pkg_dir is not None and (pkg_dir / "build.json").is_file():
        source = Path(json.loads((pkg_dir / "build.json").read_text())["source"])
        return source, package_artifacts(pkg_dir)
    raise NotFound(
        f"{model}: not a model folder (config.json + safetensors) nor a package "
        "famous built (famous build SOURCE --target …)"
    )


def _license(model_dir: Path) -> str:
    readme = model_dir / "README.md"
    if readme.is_file():
        m = re.search(
            r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="replace"), re.M
        )
        if m:
            return m.group(1)
    return "unknown"
