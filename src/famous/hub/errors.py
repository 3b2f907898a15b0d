"""Errors of the model lifecycle. Each says what happened and what to do next."""

from __future__ import annotations

from famous.errors import FamousError, Incompatible, InvalidInput, NotFound


class HubError(FamousError, RuntimeError):
    """Base class: ``str(err)`` is the whole message, ``hint`` the next step for the user.

    A subclass also derives from the kind (``famous.errors``) that decides its exit code.
    """


class RepoNotFound(HubError, NotFound):
    def __init__(self, repo_id: str, similar: list[str] | None = None) -> None:
        self.repo_id = repo_id
        self.similar = list(similar or [])
        hint = (
            "similar repos: " + ", ".join(self.similar)
            if self.similar
            else "check the spelling, or look with `famous search NAME`"
        )
        super().__init__(f"no model repo {repo_id!r} on the Hub (or it is private)", hint)


class UnknownVariant(HubError, NotFound):
    """A package has no model option by the name or quantization the user gave."""


class NoMatchingFiles(HubError, Incompatible):
    """No file of the repo matches the chosen variant's patterns."""


class NoEngineFits(HubError, Incompatible):
    """The matchmaker found no engine of the package for this machine (or the one named)."""


class NotAPackage(HubError, InvalidInput):
    """A local file or folder was given where a package is expected."""


class PathMissing(HubError, NotFound):
    """A local path to import does not exist."""


class GatedRepo(HubError):
    def __init__(self, repo_id: str, endpoint: str) -> None:
        self.repo_id = repo_id
        super().__init__(
            f"{repo_id} is gated: the Hub refused to serve its files without a valid token",
            f"accept its terms at {endpoint}/{repo_id}, then set HF_TOKEN "
            "(a read token from https://huggingface.co/settings/tokens) and pull again",
        )


class NoUsableFormat(HubError, Incompatible):
    def __init__(self, repo_id: str, found: dict[str, list[str]], needs: dict[str, str]) -> None:
        self.repo_id = repo_id
        self.found = found
        listed = "; ".join(f"{fmt}: {', '.join(files[:3])}" for fmt, files in found.items())
        wants = "; ".join(f"{fmt} needs {what}" for fmt, what in needs.items())
        super().__init__(
            f"{repo_id} has no format famous can serve here (found {listed or 'no model files'})",
            wants or "pick a repo with GGUF or safetensors weights (`famous search NAME`)",
        )


class PickleRefused(HubError, Incompatible):
    def __init__(self, repo_id: str, files: list[str]) -> None:
        super().__init__(
            f"{repo_id} only has pickle checkpoints ({', '.join(files[:3])}); loading a pickle "
            "can run arbitrary code",
            "pull a safetensors or GGUF repo of the same model, or pass --allow-pickle if you "
            "trust its author",
        )


class NotEnoughDisk(HubError):
    def __init__(self, needed: int, free: int, where: str) -> None:
        from famous.units import format_size

        self.needed, self.free = needed, free
        super().__init__(
            f"not enough disk space in {where}: the download needs {format_size(needed)}, "
            f"{format_size(free)} is free",
            "free some space (`famous prune`, `famous rm MODEL`) or set FAMOUS_HOME to a "
            "bigger disk",
        )


class OfflineNotCached(HubError, NotFound):
    def __init__(self, model: str, cached: list[str]) -> None:
        have = ", ".join(cached) if cached else "nothing"
        super().__init__(
            f"offline mode: {model} is not in the local catalog (installed: {have})",
            "pull it once while online (unset HF_HUB_OFFLINE / drop --offline)",
        )


class ChecksumMismatch(HubError):
    def __init__(self, filename: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{filename}: downloaded bytes do not match the Hub's checksum "
            f"(expected {expected[:16]}…, got {actual[:16]}…); the file was discarded and "
            "nothing was registered",
            "pull again later; if it persists, the mirror (HF_ENDPOINT) or a proxy is "
            "altering files",
        )


class DownloadFailed(HubError):
    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(
            f"download of {filename} failed: {reason}",
            "run the same `famous pull` again: it resumes where it stopped",
        )


class DownloadStopped(DownloadFailed):
    """A file's download stopped because another file of the same pull failed: a
    consequence, never the reason a pull reports."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, "stopped because another file failed")


class PullCancelled(HubError):
    """The pull was cancelled (``cancel`` was set); the unfinished bytes stay for the next
    pull to resume."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"the pull of {model} was cancelled",
            "pull it again to resume where it stopped",
        )


class FileMissing(HubError, NotFound):
    def __init__(self, repo_id: str, filename: str) -> None:
        super().__init__(
            f"{repo_id} lists {filename} but the Hub answered 404 for it",
            "the repo may be changing right now; pull again in a moment",
        )


class BadReference(HubError, InvalidInput):
    """What the user typed cannot name a model: refused before anything is read or written."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(
            f"{text!r} {problem}",
            "name a package (`famous models`), a Hub repo as ORG/NAME[:QUANT], or a package "
            "folder; register a local model file or folder with `famous import PATH`",
        )


class BadModelFile(HubError, InvalidInput):
    """A local file that is not the model it claims to be: nothing is registered."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(
            f"{path}: {problem}; nothing was registered",
            "famous imports a GGUF file, or a model folder with config.json and safetensors "
            "(or GGUF) weights; if the file came from a download, fetch it again",
        )


class UnexpectedAnswer(HubError):
    """The server at HF_ENDPOINT answered, but not as a Hub does (HTML, nothing, garbage)."""

    def __init__(self, endpoint: str, what: str, answer: str) -> None:
        super().__init__(
            f"{endpoint} answered the {what} with {answer}, not the Hub's JSON",
            "check HF_ENDPOINT: it must be the address of a Hugging Face Hub or a mirror of its "
            "API (unset it to use https://huggingface.co)",
        )


class UnsafeName(HubError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"refusing the file name {name!r} from the Hub: it would escape the model folder",
            "report the repo; famous never writes outside FAMOUS_HOME",
        )
