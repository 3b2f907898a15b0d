"""Load and strictly validate model packages: a built-in name, or a package directory.

A package directory holds ``model.yaml`` and ``engines/<engine>/engine.yaml``. Every
problem in every file is collected and reported together; nothing half-valid is returned.
Where packages live is ``famous.manifests.locate`` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from famous.manifests.errors import ManifestError, ManifestProblem, PackageNotFound
from famous.manifests.locate import (
    builtin_package_names,
    builtin_packages_dir,
    engine_names,
    package_dir,
    user_package_names,
    user_packages_dir,
)
from famous.manifests.schema import EngineManifest, ModelManifest, ModelPackage
from famous.manifests.yamlfile import Lines, line_of, load_yaml

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "builtin_package_names",
    "builtin_packages_dir",
    "engine_names",
    "find_package",
    "load_model_manifest",
    "load_package",
    "package_dir",
    "user_package_names",
    "user_packages_dir",
]

_UNION_TAGS = {"cpu", "gpu", "npu", "pci", "CpuDevice", "PciDevice"}


def _clean_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-tag segments so the location matches the YAML path."""
    out: list[Any] = []
    node = data
    for seg in loc:
        if isinstance(node, dict) and seg not in node and seg in _UNION_TAGS:
            continue
        out.append(seg)
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
        else:
            node = None
    return tuple(out)


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r}"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("int_", "bool_", "float_", "string_")):
        message += f" (got {error.get('input')!r})"
    return message


def _validate(
    schema: type[M], file: Path, problems: list[ManifestProblem]
) -> tuple[M | None, Any, Lines]:
    try:
        data, lines = load_yaml(file)
    except ManifestError as exc:
        problems.extend(exc.problems)
        return None, None, {}
    if not isinstance(data, dict):
        problems.append(ManifestProblem(file, 1, None, "expected a mapping of keys to values"))
        return None, data, lines
    try:
        return schema.model_validate(data), data, lines
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(data, tuple(error["loc"]))
            field = ".".join(f"[{s}]" if isinstance(s, int) else str(s) for s in loc)
            problems.append(
                ManifestProblem(
                    file, line_of(lines, loc), field.replace(".[", "["), _message(error)
                )
            )
        return None, data, lines


def load_package(directory: Path) -> ModelPackage:
    """Load one package directory; raise ManifestError listing every problem found."""
    directory = Path(directory)
    problems: list[ManifestProblem] = []
    model_file = directory / "model.yaml"
    if not model_file.is_file():
        raise ManifestError([ManifestProblem(model_file, None, None, "model.yaml is missing")])
    model, _, model_lines = _validate(ModelManifest, model_file, problems)
    if model and model.name != directory.name:
        problems.append(
            ManifestProblem(
                model_file,
                model_lines.get(("name",)),
                "name",
                f"{model.name!r} does not match its folder {directory.name!r}",
            )
        )
    engines: dict[str, EngineManifest] = {}
    engine_files = sorted((directory / "engines").glob("*/engine.yaml"))
    if not engine_files:
        problems.append(
            ManifestProblem(directory / "engines", None, None, "no engines/<name>/engine.yaml")
        )
    for file in engine_files:
        engine, _, lines = _validate(EngineManifest, file, problems)
        if engine is None:
            continue
        if engine.name != file.parent.name:
            problems.append(
                ManifestProblem(
                    file,
                    lines.get(("name",)),
                    "name",
                    f"{engine.name!r} does not match its folder {file.parent.name!r}",
                )
            )
        if model:
            for index, option in enumerate(engine.model_options):
                if option not in model.options:
                    problems.append(
                        ManifestProblem(
                            file,
                            lines.get(("model-options", index)),
                            f"model-options[{index}]",
                            f"{option!r} is not an option of {model_file} "
                            f"(known: {', '.join(model.options)})",
                        )
                    )
        engines[engine.name] = engine
    if problems:
        raise ManifestError(problems)
    assert model is not None
    return ModelPackage(model=model, engines=engines, source=str(directory))


def load_model_manifest(directory: Path) -> ModelManifest:
    """Only ``model.yaml`` of a package (for listings that do not need the engines)."""
    problems: list[ManifestProblem] = []
    model, _, _ = _validate(ModelManifest, Path(directory) / "model.yaml", problems)
    if problems:
        raise ManifestError(problems)
    assert model is not None
    return model


def find_package(name: str) -> ModelPackage:
    """A built-in package by name, a user package by name, or a package directory by path."""
    directory = package_dir(name)
    if directory is None:
        raise PackageNotFound(name, sorted({*builtin_package_names(), *user_package_names()}))
    return load_package(directory)
