"""famous pull against a local Hub-protocol server, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from builders import gguf_repo, pickle_only_repo, safetensors_repo, vision_gguf_repo
from hub_server import HubServer

from famous.hub import errors
from famous.hub.pull import pull
from famous.store.artifacts import check_artifact, installed_artifacts, list_artifacts


def _gets(server: HubServer) -> list[str]:
    """Byte downloads: blob GETs and small-file resolves (not the GGUF header peek)."""
    return [
        p
        for m, p, rng in server.requests
        if m == "GET"
        and (p.startswith("/cdn/") or ("/resolve/" in p and not p.endswith(".gguf")))
        and not (rng or "").startswith("bytes=0-")
    ]


def test_gguf_repo_fetches_one_quantization(hub: HubServer, cpu_report) -> None:
    repo = hub.add_repo("org/Tiny-GGUF", gguf_repo())
    result = pull("org/Tiny-GGUF", report=cpu_report)
    assert (result.engine, result.variant, result.reused) == ("cpu", "q4_k_m", False)
    wanted = repo.files["tiny-q4_k_m.gguf"]
    fetched = _gets(hub)
    assert len(fetched) == 1 and wanted.sha256 in fetched[0]
    artifact = result.artifact
    assert Path(artifact.path).name == "tiny-q4_k_m.gguf"
    assert hashlib.sha256(Path(artifact.path).read_bytes()).hexdigest() == wanted.sha256
    assert [f.sha256 for f in artifact.files] == [wanted.sha256]
    assert artifact.revision == repo.sha
    assert artifact.metadata["gguf"]["architecture"] == "llama"
    assert artifact.metadata["gguf"]["quantization"] == "Q4_K_M"
    assert [a.variant for a in list_artifacts()] == ["q4_k_m"]


def test_second_pull_reuses_without_downloading(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    pull("org/Tiny-GGUF", report=cpu_report)
    before = len(_gets(hub))
    again = pull("org/Tiny-GGUF", report=cpu_report)
    assert again.reused and len(_gets(hub)) == before


def test_variant_from_name_and_flag(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    assert pull("hf.co/org/Tiny-GGUF:Q8_0", report=cpu_report).variant == "q8_0"
    assert pull("org/Tiny-GGUF", variant="Q8_0", report=cpu_report).reused


def test_sharded_gguf_is_fetched_whole(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    result = pull("org/Tiny-GGUF", variant="f16", report=cpu_report)
    rels = sorted(f.relpath for f in result.artifact.files)
    assert rels == ["tiny-f16-00001-of-00002.gguf", "tiny-f16-00002-of-00002.gguf"]
    assert result.artifact.path.endswith("tiny-f16-00001-of-00002.gguf")


def test_safetensors_repo_fetches_weights_config_tokenizer_never_code(
    hub: HubServer, cpu_report
) -> None:
    hub.add_repo("org/tiny-llama", safetensors_repo())
    result = pull("org/tiny-llama", report=cpu_report)
    rels = {f.relpath for f in result.artifact.files}
    assert rels == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    }
    assert result.artifact.format == "safetensors"
    assert result.engine == "native-cpu"
    assert not any(p.endswith((".py", ".bin")) for p in _gets(hub))


def test_pickle_refused_unless_allowed(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/old-model", pickle_only_repo())
    with pytest.raises(errors.PickleRefused, match="--allow-pickle"):
        pull("org/old-model", report=cpu_report)
    assert list_artifacts() == []
    result = pull("org/old-model", allow_pickle=True, report=cpu_report)
    assert "pytorch_model.bin" in {f.relpath for f in result.artifact.files}


def test_unknown_repo_suggests_similar_names(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    with pytest.raises(errors.RepoNotFound) as info:
        pull("org/Tiny-GUFF", report=cpu_report)
    assert "org/Tiny-GGUF" in info.value.similar


def test_gated_repo_needs_token(hub: HubServer, cpu_report, monkeypatch) -> None:
    hub.add_repo("org/Gated-GGUF", gguf_repo(), gated=True)
    with pytest.raises(errors.GatedRepo, match="HF_TOKEN"):
        pull("org/Gated-GGUF", report=cpu_report)
    assert list_artifacts() == []
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert pull("org/Gated-GGUF", report=cpu_report).variant == "q4_k_m"


def test_repo_without_usable_format(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/onnx-only", {"model.onnx": b"\0" * 100, "config.json": b"{}"})
    with pytest.raises(errors.NoUsableFormat, match="onnx") as info:
        pull("org/onnx-only", report=cpu_report)
    assert "ONNX Runtime" in str(info.value)


def test_not_enough_disk(hub: HubServer, cpu_report, monkeypatch) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    monkeypatch.setattr("famous.hub.download.free_bytes", lambda folder: 1000)
    with pytest.raises(errors.NotEnoughDisk, match="needs"):
        pull("org/Tiny-GGUF", report=cpu_report)
    assert list_artifacts() == [] and _gets(hub) == []


def test_offline_uses_catalog_or_says_so(hub: HubServer, cpu_report, monkeypatch) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    with pytest.raises(errors.OfflineNotCached, match="not in the local catalog"):
        pull("org/Tiny-GGUF", offline=True, report=cpu_report)
    pull("org/Tiny-GGUF", report=cpu_report)
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = pull("org/Tiny-GGUF", report=cpu_report)
    assert result.reused and hub.requests == []


def test_unsafe_file_names_are_refused(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/evil-GGUF", {"../../escape-q4_k_m.gguf": gguf_repo()["tiny-q4_k_m.gguf"]})
    with pytest.raises(errors.UnsafeName):
        pull("org/evil-GGUF", report=cpu_report)
    assert list_artifacts() == []


def test_modified_installed_file_is_detected_and_refetched(hub: HubServer, cpu_report) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    first = pull("org/Tiny-GGUF", report=cpu_report)
    path = Path(first.artifact.path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert check_artifact(installed_artifacts("org/Tiny-GGUF")[0])
    again = pull("org/Tiny-GGUF", report=cpu_report)
    assert not again.reused and again.warnings
    assert not check_artifact(installed_artifacts("org/Tiny-GGUF")[0], deep=True)


def test_vision_repo_pulls_one_projector_with_the_variant(hub: HubServer, cpu_report) -> None:
    """Every variant takes the f16 projector (not the smaller f32 or q8_0 ones), downloaded
    and verified like the weights, and the artifact still loads the model file."""
    repo = hub.add_repo("org/Tiny-Vision-GGUF", vision_gguf_repo())
    result = pull("org/Tiny-Vision-GGUF", report=cpu_report)
    files = {f.relpath: f.sha256 for f in result.artifact.files}
    assert sorted(files) == ["mmproj-tiny-f16.gguf", "tiny-q4_k_m.gguf"]
    assert files["mmproj-tiny-f16.gguf"] == repo.files["mmproj-tiny-f16.gguf"].sha256
    assert Path(result.artifact.path).name == "tiny-q4_k_m.gguf"
    assert result.artifact.metadata["gguf"]["architecture"] == "llama"
    projector = Path(result.artifact.path).parent / "mmproj-tiny-f16.gguf"
    assert hashlib.sha256(projector.read_bytes()).hexdigest() == files["mmproj-tiny-f16.gguf"]
    assert not check_artifact(result.artifact)
    other = pull("org/Tiny-Vision-GGUF", variant="q8_0", report=cpu_report)
    assert sorted(f.relpath for f in other.artifact.files) == [
        "mmproj-tiny-f16.gguf",
        "tiny-q8_0.gguf",
    ]


def test_projector_choice_without_f16_is_the_smallest() -> None:
    from famous.formats.projector import choose_projector

    sizes = {"mmproj-f32.gguf": 400, "mmproj-q8_0.gguf": 100, "mmproj-Q4_K.gguf": 60, "m.gguf": 1}
    assert choose_projector(sizes) == "mmproj-Q4_K.gguf"
    assert choose_projector({**sizes, "mmproj-model-BF16.gguf": 200}) == "mmproj-model-BF16.gguf"
    assert choose_projector({**sizes, "x/mmproj-f16.gguf": 200}) == "x/mmproj-f16.gguf"
    assert choose_projector({"m.gguf": 1}) is None


def test_llama_server_launches_a_pulled_vision_model_with_its_projector(
    hub: HubServer, cpu_report
) -> None:
    from famous.runtimes.base import LaunchSpec
    from famous.runtimes.llamacpp import LlamaServer

    hub.add_repo("org/Tiny-Vision-GGUF", vision_gguf_repo())
    artifact = pull("org/Tiny-Vision-GGUF", report=cpu_report).artifact
    spec = LaunchSpec(name="v", model_path=Path(artifact.path))
    argv = LlamaServer({}, Path("/bin/true")).command(spec, 9)
    assert argv[argv.index("--mmproj") + 1] == str(Path(artifact.root) / "mmproj-tiny-f16.gguf")
