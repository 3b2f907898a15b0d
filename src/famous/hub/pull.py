"""``famous pull``: name → package → engine choice → only that engine's files → catalog.

The service behind ``famous pull`` and ``famous run`` (which calls ``pull`` first). Order of
work: resolve the name, choose the engine with the matchmaker, reuse the installed artifact
when it is intact, else download the option's exact files (resolved from the repo listing by
its glob patterns) under a per-folder file lock, verify them, and register the artifact in
one transaction. Nothing partial is ever registered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from famous.formats.projector import is_projector
from famous.hub import client
from famous.hub.client import RemoteFile, RepoListing
from famous.hub.errors import (
    HubError,
    NoEngineFits,
    NoMatchingFiles,
    NotAPackage,
    OfflineNotCached,
    PathMissing,
    PullCancelled,
    UnknownVariant,
)
from famous.hub.formats import (
    GgufHeader,
    gguf_groups,
    gguf_quant,
    is_pickle,
    parse_gguf_header,
    projector_for,
    read_gguf_header,
)
from famous.hub.names import (
    ModelRef,
    check_text,
    parse_reference,
    repo_dirname,
    safe_component,
    safe_relpath,
)
from famous.hub.progress import NullProgress, ProgressSink
from famous.hub.synthesize import config_from_bytes, matching, synthesize_package
from famous.store.artifacts import (
    ArtifactFile,
    InstalledArtifact,
    check_artifact,
    find_artifact,
    list_artifacts,
    register_artifact,
)
from famous.store.paths import models_dir

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import ModelOption, ModelPackage


class PullResult(BaseModel):
    """What ``pull`` installed (or found installed) and how."""

    model: str = Field(description="catalog name: the package name, or the repo id")
    package: str
    engine: str
    variant: str
    artifact: InstalledArtifact
    reused: bool = Field(description="already installed and intact: nothing was downloaded")
    downloaded_bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)


class ResolvedModel(BaseModel):
    """A name resolved to a package (built-in, local directory, or synthesized from a repo)."""

    model_config = {"arbitrary_types_allowed": True}
    catalog_name: str
    package: Any  # ModelPackage
    listing: RepoListing | None = None
    variant: str | None = None
    revision: str | None = None


# -- resolving names ------------------------------------------------------------------------


def _builtin_for_repo(repo_id: str) -> ModelPackage | None:
    """A built-in package offering ``repo_id``, restricted to that repo's options."""
    from famous.manifests.loader import builtin_package_names, find_package

    for name in builtin_package_names():
        try:
            package = find_package(name)
        except Exception:
            continue
        keep = [
            o for o, opt in package.model.options.items() if opt.repo.lower() == repo_id.lower()
        ]
        if keep:
            return _restrict(package, keep)
    return None


def _restrict(package: ModelPackage, options: list[str]) -> ModelPackage:
    engines = {}
    for name, engine in package.engines.items():
        usable = [o for o in engine.model_options if o in options]
        if usable:
            default = (
                engine.default_model_option if engine.default_model_option in usable else usable[0]
            )
            engines[name] = engine.model_copy(
                update={"model_options": usable, "default_model_option": default}
            )
    model = package.model.model_copy(
        update={"options": {k: v for k, v in package.model.options.items() if k in options}}
    )
    return package.model_copy(update={"model": model, "engines": engines})


SMALL_FILE_LIMIT = 16 << 20  # config.json and friends: anything bigger is not one
HEADER_PROBE_BYTES = 2 << 20  # enough for a GGUF header's architecture and shape keys


def _get_bytes(
    repo_id: str, revision: str, path: str, tok: str | None, limit: int | None = None
) -> bytes | None:
    """A small file (config.json) or a prefix (GGUF header) straight from the resolve URL.

    Asks for ``limit`` bytes with ``Range`` but reads no more than that whatever the server
    answers, then closes the connection: a mirror that ignores ``Range`` and starts sending
    the whole file costs the prefix, not a second download. A small file over
    SMALL_FILE_LIMIT is not read at all (None).
    """
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=tok)
    headers["Accept-Encoding"] = "identity"
    if limit:
        headers["Range"] = f"bytes=0-{limit - 1}"
    cap = limit or SMALL_FILE_LIMIT
    url = hf_hub_url(repo_id, path, revision=revision, endpoint=client.endpoint())
    chunks: list[bytes] = []
    have = 0
    try:
        with get_session().stream("GET", url, headers=headers, timeout=10) as r:
            if r.status_code not in (200, 206):
                return None
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                have += len(chunk)
                if have >= cap:
                    break  # leaving the block closes the response mid-body
    except Exception:
        return None
    data = b"".join(chunks)
    if limit:
        return data[:limit]
    return data if have <= cap else None


def _remote_header(listing: RepoListing, tok: str | None) -> GgufHeader | None:
    ggufs = sorted(
        (f for f in listing.files if f.path.lower().endswith(".gguf") and not is_projector(f.path)),
        key=lambda f: f.size,
    )
    if not ggufs:
        return None
    data = _get_bytes(
        listing.repo_id, listing.revision, ggufs[0].path, tok, limit=HEADER_PROBE_BYTES
    )
    try:
        return parse_gguf_header(data) if data else None
    except ValueError:
        return None


def synthesize_for_repo(
    listing: RepoListing, *, allow_pickle: bool = False, tok: str | None = None
) -> ModelPackage:
    config = None
    if listing.get("config.json"):
        config = config_from_bytes(
            _get_bytes(listing.repo_id, listing.revision, "config.json", tok)
        )
    header = _remote_header(listing, tok)
    return synthesize_package(
        listing, config=config, header=header, allow_pickle=allow_pickle, endpoint=client.endpoint()
    )


def resolve_model(
    ref: ModelRef, *, allow_pickle: bool = False, tok: str | None = None, online: bool = True
) -> ResolvedModel:
    from famous.manifests.loader import find_package

    if ref.kind == "package":
        try:
            package = find_package(ref.name)
        except Exception as exc:
            raise HubError(
                str(exc).split("\n")[0], "see `famous models`, or name a Hub repo as ORG/NAME"
            ) from exc
        return ResolvedModel(catalog_name=package.name, package=package, variant=ref.variant)
    if ref.kind == "path":
        package = find_package(ref.name)
        return ResolvedModel(catalog_name=package.name, package=package, variant=ref.variant)
    builtin = _builtin_for_repo(ref.name)
    if builtin is not None:
        return ResolvedModel(
            catalog_name=builtin.name, package=builtin, variant=ref.variant, revision=ref.revision
        )
    if not online:
        return ResolvedModel(catalog_name=ref.name, package=None, variant=ref.variant)
    listing = client.fetch_listing(ref.name, ref.revision, tok)
    package = synthesize_for_repo(listing, allow_pickle=allow_pickle, tok=tok)
    return ResolvedModel(
        catalog_name=listing.repo_id,
        package=package,
        listing=listing,
        variant=ref.variant,
        revision=listing.revision,
    )


def _option_name(package: ModelPackage, variant: str | None) -> str | None:
    if variant is None:
        return None
    for name, opt in package.model.options.items():
        if variant.lower() in (name.lower(), opt.quantization.lower()):
            return name
    known = ", ".join(f"{n} ({o.quantization})" for n, o in package.model.options.items())
    raise UnknownVariant(f"{package.name} has no variant {variant!r}", f"its variants: {known}")


# -- files ------------------------------------------------------------------------------------


def _gguf_files(listing: RepoListing, option: ModelOption, chosen: list[str]) -> list[str]:
    """One GGUF model of the matches (every shard of it), its companions, and the repo's
    vision projector for it when there is one (``famous.formats.projector``'s pick)."""
    groups = gguf_groups(chosen)
    if len(groups) > 1:
        exact = [
            k
            for k, fs in groups.items()
            if (gguf_quant(fs[0]) or "").lower() == option.quantization.lower()
        ]
        keep = exact[0] if exact else sorted(groups)[0]
        groups = {keep: groups[keep]}
    whole = gguf_groups(listing.paths())  # every shard of the chosen model, not just the matches
    wanted = {p for p in chosen if not p.lower().endswith(".gguf")}
    for key in groups:
        wanted.update(whole.get(key, groups[key]))
    models = sorted(p for p in wanted if p.lower().endswith(".gguf"))
    sizes = {f.path: f.size for f in listing.files}
    projector = projector_for(models[0], sizes) if models else None
    return sorted(wanted | ({projector} if projector else set()))


def resolve_files(
    listing: RepoListing, option: ModelOption, *, allow_pickle: bool = False
) -> list[RemoteFile]:
    """The exact files of ``option`` in ``listing``: its glob patterns, one GGUF (all shards)."""
    paths = [p for p in listing.paths() if not p.endswith(".py")]
    if not allow_pickle:
        paths = [p for p in paths if not is_pickle(p) or option.format == "openvino"]
    chosen = matching(paths, option.files)
    if option.format == "gguf":
        chosen = _gguf_files(listing, option, [p for p in chosen if not is_projector(p)])
    weights = [
        p
        for p in chosen
        if p.lower().endswith(
            (".gguf", ".safetensors", ".bin", ".xml", ".onnx", ".tflite", ".pte", ".pt", ".pth")
        )
    ]
    if not weights:
        there = ", ".join(p for p in listing.paths() if not p.endswith((".md", ".gitattributes")))[
            :400
        ]
        raise NoMatchingFiles(
            f"{listing.repo_id}: no file matches the {option.quantization} variant's "
            f"patterns {option.files}",
            f"files in the repo: {there or 'none'}; pick another variant with --variant",
        )
    return [f for f in listing.files if f.path in set(chosen)]


def _engine_path(dest: Path, option: ModelOption, files: list[RemoteFile]) -> Path:
    """What the engine loads: the (first shard of the) GGUF file, else the folder."""
    if option.format == "gguf":
        ggufs = sorted(
            f.path for f in files if f.path.lower().endswith(".gguf") and not is_projector(f.path)
        )
        if ggufs:
            return dest / safe_relpath(ggufs[0])
    folders = {
        str(Path(f.path).parent)
        for f in files
        if f.path.endswith((".safetensors", ".xml", ".json"))
    }
    if len(folders) == 1 and (folder := folders.pop()) != ".":
        return dest / safe_relpath(folder)
    return dest


def _header_metadata(path: Path) -> dict[str, object]:
    try:
        header = read_gguf_header(path)
    except (OSError, ValueError):
        return {}
    return {"gguf": header.model_dump(exclude_none=True)}


# -- the service ------------------------------------------------------------------------------


def _select(
    package: ModelPackage, report: HardwareReport | None, engine: str | None, option: str | None
) -> Any:
    from famous.matchmaker import NoCompatibleEngine, UnknownEngine
    from famous.matchmaker.resolve import resolve_selection

    try:  # honours an engine pinned with `famous use-engine`
        return resolve_selection(
            package.name, engine=engine, option=option, report=report, package=package
        ).selection
    except (NoCompatibleEngine, UnknownEngine) as exc:
        raise NoEngineFits(
            str(exc).strip("'\""), "see `famous engines MODEL`; --engine NAME picks one"
        ) from exc


def _installed(name: str, engine: str | None, variant: str | None) -> list[InstalledArtifact]:
    return [
        a
        for a in list_artifacts(name, with_files=True)
        if (engine is None or a.engine == engine)
        and (variant is None or a.variant.lower() == variant.lower())
    ]


def _pull_offline(
    ref: ModelRef,
    resolved: ResolvedModel | None,
    engine: str | None,
    variant: str | None,
    report: HardwareReport | None,
) -> PullResult:
    name = resolved.catalog_name if resolved else ref.name
    found = _installed(name, engine, variant)
    if resolved is not None and resolved.package is not None and found:
        try:
            sel = _select(resolved.package, report, engine, _option_name(resolved.package, variant))
            best = [
                a for a in found if a.engine == sel.engine.name and a.variant == sel.option_name
            ]
            found = best or found
        except HubError:
            pass
    for artifact in sorted(found, key=lambda a: a.created_at, reverse=True):
        if not check_artifact(artifact):
            return PullResult(
                model=artifact.model,
                package=resolved.package.name if resolved and resolved.package else artifact.model,
                engine=artifact.engine,
                variant=artifact.variant,
                artifact=artifact,
                reused=True,
                warnings=[
                    "offline: using the installed artifact without checking the Hub for updates"
                ],
            )
    raise OfflineNotCached(
        name, sorted({f"{a.model} ({a.engine}/{a.variant})" for a in list_artifacts()})
    )


def pull(
    model: str,
    *,
    engine: str | None = None,
    variant: str | None = None,
    offline: bool | None = None,
    allow_pickle: bool = False,
    report: HardwareReport | None = None,
    progress: ProgressSink | None = None,
    token: str | None = None,
    retries: int = 5,
    max_workers: int = 8,
    on_wait: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
) -> PullResult:
    """Make ``model`` (package name, ORG/NAME[:QUANT], hf.co/…, or a package directory)
    installed for the engine the matchmaker picks (or ``engine``/``variant``); return it.

    Raises HubError subclasses (``.hint`` says what to do; their kind in ``famous.errors``
    decides the CLI's exit code). Setting ``cancel`` (from another thread) stops the
    download at its next chunk with PullCancelled: nothing is registered, the lock is
    released, and the unfinished bytes stay for the next pull to resume.
    """
    started = time.monotonic()
    progress = progress or NullProgress()
    ref = parse_reference(model)
    if ref.kind == "path" and not (Path(ref.name) / "model.yaml").is_file():
        raise NotAPackage(
            f"{model} is a local file or folder, not a package",
            "register it with `famous import PATH`",
        )
    variant = variant or ref.variant
    tok = token if token is not None else client.token()
    if client.offline(offline):
        resolved = None
        if ref.kind != "repo" or _builtin_for_repo(ref.name) is not None:
            resolved = resolve_model(ref, tok=tok, online=False)
        return _pull_offline(ref, resolved, engine, variant, report)
    resolved = resolve_model(ref, allow_pickle=allow_pickle, tok=tok)
    package = resolved.package
    sel = _select(package, report, engine, _option_name(package, variant))
    option = sel.option
    warnings: list[str] = []

    def result(artifact: InstalledArtifact, reused: bool, downloaded: int = 0) -> PullResult:
        return PullResult(
            model=resolved.catalog_name,
            package=package.name,
            engine=sel.engine.name,
            variant=sel.option_name,
            artifact=artifact,
            reused=reused,
            downloaded_bytes=downloaded,
            seconds=time.monotonic() - started,
            warnings=warnings,
        )

    existing = find_artifact(resolved.catalog_name, sel.engine.name, sel.option_name)
    if existing is not None:
        problems = check_artifact(existing)
        if not problems:
            return result(existing, reused=True)
        warnings.append(
            "installed files failed verification, fetching again: " + "; ".join(problems)
        )
        _forget_bad_files(existing, problems)

    listing = resolved.listing
    if listing is None or listing.repo_id.lower() != option.repo.lower():
        listing = client.fetch_listing(option.repo, resolved.revision, tok)
    files = resolve_files(listing, option, allow_pickle=allow_pickle)
    dest = models_dir() / "hub" / repo_dirname(listing.repo_id) / safe_component(sel.option_name)

    from famous.hub.download import check_disk, download_files, needed_bytes
    from famous.store.locks import held

    if cancel is not None and cancel.is_set():
        raise PullCancelled(resolved.catalog_name)
    with held(str(dest), on_wait=on_wait):
        again = find_artifact(resolved.catalog_name, sel.engine.name, sel.option_name)
        if (
            again is not None
            and (existing is None or again.id != existing.id)
            and not check_artifact(again)
        ):
            return result(again, reused=True)  # another famous finished it while we waited
        check_disk(files, dest)
        todo = needed_bytes(files, dest)
        verified = download_files(
            listing.repo_id,
            listing.revision,
            files,
            dest,
            token=tok,
            progress=progress,
            retries=retries,
            max_workers=max_workers,
            cancel=cancel,
        )
        path = _engine_path(dest, option, files)
        metadata: dict[str, object] = {
            "package": package.name,
            "quantization": option.quantization,
            # who picked this variant: prune keeps the matchmaker's pick of a repo whose
            # package it cannot rebuild offline
            "selected_by": "user" if (engine or variant) else "matchmaker",
        }
        if option.format == "gguf" and path.is_file():
            metadata.update(_header_metadata(path))
        artifact = register_artifact(
            model=resolved.catalog_name,
            engine=sel.engine.name,
            variant=sel.option_name,
            format=option.format,
            path=path,
            root=dest,
            files=[
                ArtifactFile(
                    relpath=v.relpath,
                    size_bytes=v.size,
                    sha256=v.sha256,
                    etag=v.blob_id,
                    mtime_ns=v.mtime_ns,
                )
                for v in verified
            ],
            source="hub",
            owned=True,
            repo_id=listing.repo_id,
            revision=listing.revision,
            metadata=metadata,
        )
    return result(artifact, reused=False, downloaded=todo)


def _forget_bad_files(artifact: InstalledArtifact, problems: list[str]) -> None:
    """Delete files that failed verification so the download fetches them again."""
    bad = {p.split(":", 1)[0] for p in problems}
    root = Path(artifact.root)
    for rel in bad:
        with contextlib.suppress(OSError, HubError):
            (root / safe_relpath(rel)).unlink(missing_ok=True)


# -- import -----------------------------------------------------------------------------------


def import_local(
    path: str | Path,
    *,
    name: str | None = None,
    copy: bool = False,
    engine: str | None = None,
    report: HardwareReport | None = None,
) -> PullResult:
    """Register a local GGUF file or model folder (no copy unless ``copy``), verified by sha256.

    Files are checked first (``famous.hub.local``): nothing that is not a sound model is
    registered. A copy goes to a new folder under FAMOUS_HOME and is registered only once
    complete; the registration it replaces keeps its files until then (the catalog drops
    the old copy's folder after the new one is in).
    """
    from famous.hub import local
    from famous.store.artifacts import file_sha256

    src = Path(path).expanduser().resolve()
    if not src.exists():
        raise PathMissing(
            f"{path} does not exist", "give the path of a .gguf file or a model folder"
        )
    base = src.name[: -len(".gguf")] if src.name.lower().endswith(".gguf") else src.name
    label = check_text(base if name is None else name, "catalog name (pass --name)")
    files_on_disk = (
        [src]
        if src.is_file()
        else sorted(p for p in src.rglob("*") if p.is_file() and ".famous" not in p.parts)
    )
    root = src.parent if src.is_file() else src
    rels = [p.relative_to(root).as_posix() for p in files_on_disk]
    local.check_source(src, rels)
    listing = RepoListing(
        repo_id=f"local/{safe_component(label, 60)}",
        revision="0" * 40,
        files=[
            RemoteFile(path=r, size=p.stat().st_size)
            for r, p in zip(rels, files_on_disk, strict=True)
        ],
    )
    config = (
        config_from_bytes((root / "config.json").read_bytes())
        if (root / "config.json").is_file()
        else None
    )
    header = None
    ggufs = [p for p in files_on_disk if p.name.lower().endswith(".gguf")]
    if ggufs:
        try:
            header = read_gguf_header(ggufs[0])
        except (OSError, ValueError):
            header = None
    package = synthesize_package(listing, config=config, header=header, allow_pickle=True)
    sel = _select(package, report, engine, None)
    files = resolve_files(listing, sel.option, allow_pickle=True)
    local.check_files(root, [f.path for f in files])
    metadata: dict[str, object] = {"package": package.name, "imported_from": str(src)}
    if header is not None:
        metadata["gguf"] = header.model_dump(exclude_none=True)

    def register(dest: Path, records: list[ArtifactFile]) -> InstalledArtifact:
        return register_artifact(
            model=label,
            engine=sel.engine.name,
            variant=sel.option_name,
            format=sel.option.format,
            path=_engine_path(dest, sel.option, files) if src.is_dir() or copy else src,
            root=dest,
            files=records,
            source="import",
            owned=copy,
            metadata=metadata,
        )

    if copy:
        with local.staging_folder(models_dir() / "local", safe_component(label)) as dest:
            records = [local.copy_file(root / f.path, dest, f.path, f.size) for f in files]
            local.finish_copies(dest)
            artifact = register(dest, records)
    else:
        records = []
        for f in files:
            p = root / safe_relpath(f.path)
            st = p.stat()
            records.append(
                ArtifactFile(
                    relpath=f.path,
                    size_bytes=st.st_size,
                    sha256=file_sha256(p),
                    mtime_ns=st.st_mtime_ns,
                )
            )
        artifact = register(root, records)
    return PullResult(
        model=label,
        package=package.name,
        engine=sel.engine.name,
        variant=sel.option_name,
        artifact=artifact,
        reused=False,
    )
