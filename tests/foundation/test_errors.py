"""One error root: every domain error is a FamousError whose kind decides its exit code."""

from __future__ import annotations

import pytest

from famous import errors
from famous.cli import exits
from famous.cli.errors import handle_errors


def test_named_exit_codes_agree_with_the_table() -> None:
    # the README's codes: 0 ok, 1 failed, 2 bad arguments, 3 incompatible, 4 unknown, 5 manifests
    assert (exits.OK, exits.ERROR, exits.USAGE) == (0, 1, 2)
    assert (exits.INCOMPATIBLE, exits.NOT_FOUND, exits.INVALID_MANIFEST) == (3, 4, 5)
    assert errors.exit_code(errors.FamousError("x")) == exits.ERROR
    assert errors.exit_code(errors.InvalidInput("x")) == exits.USAGE
    assert errors.exit_code(errors.Incompatible("x")) == exits.INCOMPATIBLE
    assert errors.exit_code(errors.NotFound("x")) == exits.NOT_FOUND
    assert errors.exit_code(errors.InvalidManifest("x")) == exits.INVALID_MANIFEST


def _domain_errors() -> list[tuple[BaseException, int]]:
    from famous.formats.gguf_meta import GGUFError
    from famous.hub import errors as hub
    from famous.manifests.errors import ManifestError, PackageNotFound
    from famous.matchmaker import NoCompatibleEngine, UnknownEngine
    from famous.runtimes import UnknownRuntime
    from famous.runtimes.base import EngineStartError, RuntimeNotInstalled
    from famous.runtimes.components import ComponentError
    from famous.store.config import ConfigError, UnknownKey
    from famous.store.db import CatalogError

    return [
        (hub.RepoNotFound("a/b"), 4),
        (hub.GatedRepo("a/b", "https://hub"), 1),
        (hub.NoUsableFormat("a/b", {}, {}), 3),
        (hub.PickleRefused("a/b", ["x.bin"]), 3),
        (hub.OfflineNotCached("m", []), 4),
        (hub.FileMissing("a/b", "f"), 4),
        (hub.BadReference("x", "is bad"), 2),
        (hub.BadModelFile("x", "is bad"), 2),
        (hub.UnknownVariant("m has no variant", "its variants: q4"), 4),
        (hub.NoMatchingFiles("no file matches", "pick another"), 3),
        (hub.NoEngineFits("no engine", "see engines"), 3),
        (hub.NotAPackage("a file", "import it"), 2),
        (hub.PathMissing("gone", "give a path"), 4),
        (hub.DownloadFailed("f", "reset"), 1),
        (PackageNotFound("m", ["a"]), 4),
        (UnknownEngine("m", "e", ["a"]), 4),
        (UnknownKey("k", ["a"]), 4),
        (ManifestError([]), 5),
        (NoCompatibleEngine("m", []), 3),
        (ConfigError("bad value"), 1),
        (CatalogError("newer schema"), 1),
        (RuntimeNotInstalled("vllm", "vllm is missing", "pip install vllm"), 3),
        (EngineStartError("exited"), 1),
        (UnknownRuntime("no adapter"), 4),
        (ComponentError("build failed"), 1),
        (GGUFError("not GGUF"), 2),
    ]


@pytest.mark.parametrize("exc,code", _domain_errors(), ids=lambda v: type(v).__name__)
def test_every_domain_error_has_a_kind_and_its_code(exc: BaseException, code: int) -> None:
    assert isinstance(exc, errors.FamousError)
    assert errors.exit_code(exc) == code


def test_errors_keep_the_builtin_bases_callers_catch() -> None:
    from famous.manifests.errors import PackageNotFound
    from famous.store.config import UnknownKey

    assert isinstance(UnknownKey("k", []), ValueError | LookupError)
    assert isinstance(PackageNotFound("m", []), LookupError)


def test_handle_errors_prints_message_and_hint_and_exits_with_the_kind(capsys) -> None:
    @handle_errors
    def command() -> None:
        raise errors.NotFound("no model 'x'", "look with `famous search x`")

    with pytest.raises(SystemExit) as exit_info:
        command()
    assert exit_info.value.code == 4
    assert capsys.readouterr().err == "error: no model 'x'\n  look with `famous search x`\n"


def test_handle_errors_lets_other_exceptions_through() -> None:
    @handle_errors
    def command() -> None:
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        command()
