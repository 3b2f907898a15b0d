"""A GGUF file as a model source: ``load_model``, the tokenizer, ``famous verify`` and
``famous genai generate`` take a ``.gguf`` path.

The GGUFs are written by famous's exporter from tiny random transformers models (one per
family famous reads back), so the references are things famous did not write: transformers
on the original folder (logits), the ``gguf`` package (its reader and its dequantizers),
``tokenizers`` on the original tokenizer.json and llama.cpp's own tokenizer (ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from genai_helpers import save_hf_model, train_tokenizer
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.errors import CheckpointError, TruncatedCheckpointError, UnsupportedModelError
from famous.genai.export.gguf import export_gguf
from famous.genai.gguf_source.dequant import dequantize
from famous.genai.gguf_source.reader import GGUFFile
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config
from famous.genai.tokenizer import Tokenizer

FAMILIES = ["llama", "qwen2", "qwen3", "gemma"]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000, and 12345!",
    "  two spaces,\nnew lines\n\n\tand a tab; naïve café",
    "<s>Once upon a time<|end|> a small model",
]


def _model_folder(kind: str, out: Path, llama3_rope: bool = True) -> Path:
    """The fake config of ``kind`` (the llama one has Llama 3 RoPE scaling, which the GGUF
    holds as ``rope_freqs``)."""
    vocab = train_tokenizer(out)
    cfg = fake_hf_config(kind)
    if not llama3_rope:
        cfg.pop("rope_scaling", None)
    cfg.update(vocab_size=vocab, bos_token_id=1, eos_token_id=6, pad_token_id=0)
    cfg["initializer_range"] = 0.2
    save_hf_model(cfg, out)
    return out


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(Hub folder, the F32 GGUF famous exported from it)."""
    folder = _model_folder(request.param, tmp_path_factory.mktemp(f"src-{request.param}"))
    gguf = tmp_path_factory.mktemp("gguf") / f"{request.param}.f32.gguf"
    export_gguf(folder, gguf, "f32")
    return folder, gguf


def _hf_logits(folder: Path, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()


def _famous_logits(source: Path, ids: list[int]) -> torch.Tensor:
    model = load_model(source, torch.float32, max_seq_len=64)
    n = len(ids)
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids]), torch.arange(n), model.init_cache(1), end=n)
    return logits[0].float()


def test_gguf_logits_match_transformers_on_the_folder(exported) -> None:
    """Config, names, rope un-permutation and Llama 3 RoPE scaling from ``rope_freqs``
    (llama), norm offset (gemma), biases (qwen2), q/k norms (qwen3) and tied heads all come
    back: transformers' logits on the original folder."""
    folder, gguf = exported
    ids = [int(t) for t in torch.randint(3, 250, (24,), generator=torch.Generator().manual_seed(1))]
    diff = (_famous_logits(gguf, ids) - _hf_logits(folder, ids)).abs().max().item()
    assert diff < 1e-4, diff


def test_tokenizer_from_gguf_matches_the_folders(exported) -> None:
    folder, gguf = exported
    ours, theirs = Tokenizer(gguf), Tokenizer(folder)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == theirs.decode(ids)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (1, 6, 0)
    chat = [{"role": "user", "content": "Hi"}]
    assert ours.apply_chat_template(chat) == theirs.apply_chat_template(chat)


def test_reader_agrees_with_the_gguf_package(exported) -> None:
    import gguf as gguf_pkg

    _, path = exported
    ours = GGUFFile(path)
    ref = gguf_pkg.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert ours.metadata.keys() == meta.keys()
    for key, value in meta.items():
        got = ours.metadata[key]
        if isinstance(value, float):
            assert got == pytest.approx(value), key
        else:
            assert got == value, key
    assert [t.name for t in ref.tensors] == list(ours.tensors)
    for t in ref.tensors:
        mine = ours.tensors[t.name]
        assert mine.shape == tuple(int(d) for d in reversed(t.shape)), t.name
        assert mine.ggml_type == t.tensor_type.value
        assert ours.read(t.name) == bytes(t.data)


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_dequantize_matches_the_gguf_package(qtype: str) -> None:
    import gguf as gguf_pkg

    q = gguf_pkg.GGMLQuantizationType[qtype]
    x = np.random.default_rng(0).standard_normal((6, 96)).astype(np.float32) * 3
    data = gguf_pkg.quants.quantize(x, q)
    want = np.asarray(gguf_pkg.quants.dequantize(data, q), dtype=np.float32).reshape(6, 96)
    got = dequantize(np.ascontiguousarray(data).tobytes(), q.value, (6, 96), "t").numpy()
    assert np.array_equal(got, want)
    if qtype in ("Q8_0", "Q4_0", "Q4_1"):  # and it is a quantization of x, not noise
        assert np.abs(got - x).max() < (0.1 if qtype == "Q8_0" else 1.5)


def test_a_type_famous_cannot_dequantize_is_named() -> None:
    with pytest.raises(CheckpointError, match=r"'w' is TQ1_0.*supported: F32, F16, BF16"):
        dequantize(b"\0" * 54, 34, (256,), "w")


def _write_gguf(path: Path, arch: str, kv: dict[str, Any]) -> Path:
    import gguf as gguf_pkg

    w = gguf_pkg.GGUFWriter(str(path), arch)
    for k, v in kv.items():
        w.add_uint32(k, v)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_an_architecture_famous_does_not_author_is_named(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "m.gguf", "mamba", {"mamba.block_count": 1})
    supported = "gemma, gemma2, gemma3, llama, phi3, qwen2"
    with pytest.raises(UnsupportedModelError, match=rf"'mamba'.*supported: {supported}"):
        load_model(path)


def test_missing_metadata_and_truncation_are_named(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "m.gguf", "llama", {"llama.block_count": 1})
    with pytest.raises(CheckpointError, match=r"lacks 'llama\.attention\.head_count'"):
        load_model(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(TruncatedCheckpointError, match=r"token_embd\.weight ends at byte"):
        GGUFFile(cut)


runner = CliRunner()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_verify_and_generate_take_a_gguf(kind: str, tmp_path: Path) -> None:
    """``famous verify X.gguf`` runs transformers' own ``gguf_file=`` loader as the
    reference; ``famous genai generate X.gguf`` prints what the folder generates. (Not on
    qwen3 here: transformers' GGUF loader ignores ``attention.key_length``, so it builds
    the fake config's 32-wide heads 128 wide; nor with Llama 3 RoPE scaling: it ignores
    ``rope_freqs`` too.)"""
    folder = _model_folder(kind, tmp_path / "src", llama3_rope=False)
    gguf = export_gguf(folder, tmp_path / "m.gguf", "f32").path
    argv = ["verify", str(gguf), "--prompt-tokens", "12", "--new-tokens", "6", "--format", "json"]
    r = runner.invoke(app, argv)
    report = json.loads(r.stdout)
    assert r.exit_code == 0 and report["ok"], r.output
    assert report["max_abs_logit_diff"] < 1e-4
    outputs = []
    for source in (gguf, folder):
        r = runner.invoke(app, ["genai", "generate", str(source), "The quick brown", "-n", "8"])
        assert r.exit_code == 0, r.output
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1] and outputs[0].strip()


def test_verify_says_when_transformers_reads_a_gguf_differently(exported) -> None:
    """The Llama 3-scaled llama (``rope_freqs``) and qwen3's 32-wide heads: transformers'
    GGUF loader builds another model, and verify says so instead of blaming famous."""
    _, gguf = exported
    kind = gguf.name.split(".")[0]
    if kind not in ("llama", "qwen3"):
        return
    r = runner.invoke(app, ["verify", str(gguf), "--prompt-tokens", "4", "--new-tokens", "1"])
    want = "RoPE 'default' where the GGUF holds 'llama3'" if kind == "llama" else "head_dim 128"
    assert r.exit_code != 0 and want in r.output, r.output
    assert "builds this model differently" in r.output


@pytest.fixture(scope="module")
def llama_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(Hub folder, its F32 GGUF) of the tiny Llama."""
    folder = _model_folder("llama", tmp_path_factory.mktemp("src-llama"))
    gguf = export_gguf(folder, tmp_path_factory.mktemp("gguf") / "tiny.gguf", "f32").path
    return folder, gguf


def test_build_takes_a_gguf(llama_gguf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``famous build X.gguf --target gguf -q q8_0``: the GGUF read back as a Hub folder and
    exported again; each matrix is what the gguf package's Q8_0 quantizer makes of the
    source file's own (llama-layout) values, so names and the q/k permutation round-trip."""
    import gguf as gguf_pkg

    _, source = llama_gguf
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path / "home"))
    argv = ["build", str(source), "--target", "gguf", "-q", "q8_0", "--format", "json"]
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)
    assert built["name"] == "tiny"
    out = {t.name: t for t in gguf_pkg.GGUFReader(built["options"][0]["path"]).tensors}
    src = {t.name: t for t in gguf_pkg.GGUFReader(str(source)).tensors}
    assert out.keys() == src.keys()
    for name, t in src.items():
        want = np.asarray(t.data, dtype=np.float32)
        if want.ndim == 2:
            want = gguf_pkg.quants.quantize(want, gguf_pkg.GGMLQuantizationType.Q8_0)
        assert bytes(out[name].data) == np.ascontiguousarray(want).tobytes(), name


def test_quantize_report_on_a_gguf_is_the_folders(llama_gguf) -> None:
    """The F32 GGUF holds the folder's weights exactly: the same quality numbers."""
    rows = []
    for source in llama_gguf:
        argv = ["quantize", str(source), "-r", "int8", "--report", "--no-embeddings", "-f", "json"]
        r = runner.invoke(app, argv)
        assert r.exit_code == 0, r.output
        rows.append(json.loads(r.stdout))
    assert rows[0][0]["kl"] > 0  # int8 changes the logits a little, the same on both
    for key in ("kl", "top1", "size_bytes"):
        assert rows[0][0][key] == rows[1][0][key], key


def test_k_quants_load_as_transformers_loads_them(tmp_path: Path) -> None:
    """Q4_K_M by llama.cpp's own quantizer (Q4_K with Q6_K for some tensors), rows 256 wide:
    famous's logits are transformers' (``gguf_file=``) on the same file."""
    import gguf as gguf_pkg
    from transformers import AutoModelForCausalLM

    from famous.genai.export.gguf import quantize_with_llama_cpp

    folder = tmp_path / "src"
    vocab = train_tokenizer(folder)
    cfg = fake_hf_config("llama")
    cfg.pop("rope_scaling", None)
    cfg.update(vocab_size=vocab, hidden_size=256, intermediate_size=512, initializer_range=0.2)
    save_hf_model(cfg, folder)
    f16 = export_gguf(folder, tmp_path / "f16.gguf", "f16").path
    path = tmp_path / "q4_k_m.gguf"
    quantize_with_llama_cpp(f16, path, "q4_k_m", threads=1)
    types = {t.tensor_type.name for t in gguf_pkg.GGUFReader(str(path)).tensors}
    assert {"Q4_K", "Q6_K"} <= types, types
    ids = [5, 17, 42, 99, 123, 7, 250, 64]
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    with torch.inference_mode():
        want = ref.eval()(torch.tensor([ids])).logits[0]
    diff = (_famous_logits(path, ids) - want).abs().max().item()
    assert diff < 1e-4, diff


@pytest.mark.parametrize(("factor", "head_dim"), [(8.0, 128), (32.0, 64)])
def test_llama3_scaling_is_recovered_from_rope_freqs(factor: float, head_dim: int) -> None:
    """Llama 3.1 (factor 8) and 3.2 (factor 32) divisors, as the GGUF exporter writes them
    for llama.cpp, give back Meta's ``rope_scaling``; divisors of another shape are refused."""
    from famous.genai.export.gguf import llama3_rope_factors
    from famous.genai.gguf_source.rope_freqs import llama3_rope_scaling

    divisors = llama3_rope_factors(head_dim, 500000.0, factor, 1.0, 4.0, 8192).tolist()
    assert llama3_rope_scaling(divisors, 500000.0, head_dim, "m.gguf") == {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    with pytest.raises(UnsupportedModelError, match="not Llama 3 RoPE scaling"):
        llama3_rope_scaling([1.0 + i for i in range(head_dim // 2)], 500000.0, head_dim, "m")
