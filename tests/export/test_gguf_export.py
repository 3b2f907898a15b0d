"""GGUF export (``famous.genai.export.gguf``) checked against what famous did not write: the
``gguf`` package reads each file back (metadata, tensor directory, dequantized values),
transformers gives the reference weights and logits, and llama.cpp itself
(llama-cpp-python) loads each file and runs it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from export_helpers import CORPUS, make_model, prompt_ids
from gguf_helpers import (
    fields,
    hf_greedy,
    hf_logits,
    kl,
    llama,
    llama_greedy,
    llama_logits,
    memorize_corpus,
    save_random_model,
    tensors,
    with_config,
)
from safetensors.numpy import load_file, save_file

from famous.genai.errors import UnsupportedModelError
from famous.genai.export.gguf import GGUF_TYPES, GGUFExportError, export_gguf, export_recipe_gguf
from famous.genai.quantize.recipe import QuantSpec, Recipe, RecipeError

Q = gguf.GGMLQuantizationType
FT = gguf.LlamaFileType
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma"]
# llama.cpp's architecture for each Hugging Face model_type (as its convert_hf_to_gguf.py)
LLAMA_CPP_ARCH = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma": "gemma",
}
MODEL_ARCH = {
    "llama": gguf.MODEL_ARCH.LLAMA,
    "mistral": gguf.MODEL_ARCH.LLAMA,
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "gemma": gguf.MODEL_ARCH.GEMMA,
}
WRITTEN = {  # type famous writes → (GGML type of its 2-D weights, general.file_type)
    "f32": (Q.F32, FT.ALL_F32),
    "f16": (Q.F16, FT.MOSTLY_F16),
    "bf16": (Q.BF16, FT.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, FT.MOSTLY_Q8_0),
    "q4_0": (Q.Q4_0, FT.MOSTLY_Q4_0),
}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def model_of(tiny_llama: Path, tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory):
    """``model_of(kind)``: a tiny random model of a family, made once per session (Llama and
    Qwen2 are the export suite's own)."""
    built = {"llama": tiny_llama, "qwen2": tiny_qwen2}

    def get(kind: str) -> Path:
        if kind == "mistral" and kind not in built:  # llama.cpp has no window: see below
            out = tmp_path_factory.mktemp("gguf-mistral")
            built[kind] = save_random_model("mistral", out, sliding_window=None)
        elif kind not in built:
            built[kind] = make_model(kind, tmp_path_factory.mktemp(f"gguf-{kind}"))
        return built[kind]

    return get


@pytest.fixture(params=ARCHS)
def arch_model(request: pytest.FixtureRequest, model_of) -> Path:
    """Each architecture llama.cpp runs from famous's GGUF."""
    return model_of(request.param)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """``exported(model_dir, outtype)``: famous's GGUF of a model, written once per session."""
    root = tmp_path_factory.mktemp("gguf-out")
    done: dict[tuple[Path, str], object] = {}

    def get(model_dir: Path, outtype: str):
        key = (model_dir, outtype)
        if key not in done:
            done[key] = export_gguf(model_dir, root / f"{model_dir.name}-{outtype}.gguf", outtype)
        return done[key]

    return get


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows of 256, what llama.cpp's K-quant blocks need (a smaller init keeps this wider
    random network about as well conditioned as the 64-wide ones)."""
    out = tmp_path_factory.mktemp("gguf-wide")
    return save_random_model(
        "qwen2", out, hidden_size=256, intermediate_size=512, initializer_range=0.05
    )


@pytest.fixture(scope="session")
def memorized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A Llama (the family whose q/k rows famous re-orders) that learned the corpus, and
    per sentence its first 4 tokens with transformers' 12 greedy tokens after them."""
    from tokenizers import Tokenizer

    model = memorize_corpus(make_model("llama", tmp_path_factory.mktemp("gguf-memorized")))
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    cases = []
    for sentence in sorted(set(CORPUS)):
        prompt = tok.encode(sentence).ids[:4]
        want = hf_greedy(model, prompt, 12)
        assert sentence.startswith(tok.decode(prompt + want)), f"not learned: {sentence}"
        cases.append((prompt, want))
    return model, cases


def _hf_config(model_dir: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ metadata


def test_metadata_is_what_llama_cpp_loads(arch_model: Path, exported) -> None:
    hf = _hf_config(arch_model)
    result = exported(arch_model, "f16")
    f = fields(result.path)
    a = LLAMA_CPP_ARCH[hf.model_type]
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    assert result.architecture == a and f["general.architecture"] == a
    want = {
        f"{a}.context_length": hf.max_position_embeddings,
        f"{a}.embedding_length": hf.hidden_size,
        f"{a}.block_count": hf.num_hidden_layers,
        f"{a}.feed_forward_length": hf.intermediate_size,
        f"{a}.attention.head_count": hf.num_attention_heads,
        f"{a}.attention.head_count_kv": hf.num_key_value_heads,
        f"{a}.rope.dimension_count": head_dim,
        f"{a}.vocab_size": hf.vocab_size,
        "general.file_type": FT.MOSTLY_F16,
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
    }
    assert {k: f.get(k) for k in want} == want
    # llama.cpp's default head size is embedding / heads: written where that is wrong
    default = hf.hidden_size // hf.num_attention_heads
    assert f.get(f"{a}.attention.key_length", default) == head_dim
    assert f.get(f"{a}.attention.value_length", default) == head_dim
    assert f[f"{a}.attention.layer_norm_rms_epsilon"] == pytest.approx(hf.rms_norm_eps, 1e-6)
    assert f[f"{a}.rope.freq_base"] == pytest.approx(hf.rope_parameters["rope_theta"], 1e-6)
    with llama(result.path) as llm:  # the real loader's reading of the same file
        assert llm._model.n_ctx_train() == hf.max_position_embeddings
        assert llm.n_embd() == hf.hidden_size
        assert llm.n_vocab() == hf.vocab_size
        assert llm.metadata["general.architecture"] == a
    assert result.warnings == []


def test_llama3_rope_scaling_is_written_as_llama_cpps_rope_freqs(tiny_llama, exported) -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = _hf_config(tiny_llama)
    assert hf.rope_parameters["rope_type"] == "llama3"
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    d = hf.head_dim
    plain = 1.0 / hf.rope_parameters["rope_theta"] ** (torch.arange(0, d, 2).double() / d)
    t = tensors(exported(tiny_llama, "f32").path)["rope_freqs.weight"]
    # llama.cpp divides each rotary frequency by its rope_freqs entry
    np.testing.assert_allclose(t.data, (plain / scaled.double()).numpy(), rtol=1e-5)


def test_linear_rope_scaling(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("gguf-linear-rope")
    model = save_random_model("qwen2", out, rope_scaling={"rope_type": "linear", "factor": 4.0})
    path = export_gguf(model, out / "m.gguf", "f32").path
    f = fields(path)
    assert f["qwen2.rope.scaling.type"] == "linear"
    assert f["qwen2.rope.scaling.factor"] == 4.0
    ids = prompt_ids(16)
    assert np.abs(llama_logits(path, ids) - hf_logits(model, ids)).max() < 0.03


# ------------------------------------------------------------------------------ tensors


def _expected_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    """GGUF name → the values llama.cpp needs, from the checkpoint transformers wrote: names
    from the gguf package's map, q/k rows of Llama re-ordered as llama.cpp's own converter
    does (``LlamaModel.permute``), Gemma's norm weights as the 1 + w they scale by."""
    hf = _hf_config(model_dir)
    names = gguf.get_tensor_name_map(MODEL_ARCH[hf.model_type], hf.num_hidden_layers)
    out = {}
    for name, w in load_file(str(model_dir / "model.safetensors")).items():
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        if MODEL_ARCH[hf.model_type] == gguf.MODEL_ARCH.LLAMA and new.endswith(
            ("attn_q.weight", "attn_k.weight")
        ):
            heads = hf.num_attention_heads if "attn_q" in new else hf.num_key_value_heads
            parts = w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            w = parts.swapaxes(1, 2).reshape(w.shape)
        if hf.model_type == "gemma" and new.endswith("norm.weight"):
            w = w + 1.0
        out[new] = w
    if hf.tie_word_embeddings:  # llama.cpp reads token_embd when output.weight is absent
        out.pop("output.weight", None)
    return out


@pytest.mark.parametrize("outtype", WRITTEN)
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_tensor_names_shapes_and_types(kind: str, outtype: str, model_of, exported) -> None:
    model_dir = model_of(kind)
    hf = _hf_config(model_dir)
    result = exported(model_dir, outtype)
    got = tensors(result.path)
    want = {n: w.shape for n, w in _expected_tensors(model_dir).items()}
    if kind == "llama":
        want["rope_freqs.weight"] = (hf.head_dim // 2,)
        assert hf.tie_word_embeddings and "output.weight" not in got
    else:
        assert not hf.tie_word_embeddings and "blk.0.attn_q.bias" in got
    # ggml lists a tensor's dimensions innermost first
    assert {n: tuple(reversed(t.shape.tolist())) for n, t in got.items()} == want
    weight_type, file_type = WRITTEN[outtype]
    for n, t in got.items():
        assert t.tensor_type == (Q.F32 if len(want[n]) == 1 else weight_type), n
    assert fields(result.path)["general.file_type"] == file_type
    assert result.tensor_types == {n: t.tensor_type.name for n, t in got.items()}
    assert result.fallbacks == {}
    assert result.size_bytes == result.path.stat().st_size


def _error_bound(expected: np.ndarray, qtype) -> np.ndarray:
    """Per element, the most a value may move: ggml's Q8_0 rounds to d = max|x| / 127 per
    block of 32 and Q4_0 to d = max|x| / 8 (where the block's extreme sits on the short side
    of [-8, 7], a value can land a whole step off); d itself is stored as f16."""
    blocks = np.abs(expected.reshape(-1, 32)).max(axis=1, keepdims=True)
    step = {Q.Q8_0: blocks / 127 * (0.5 + 127 * 2.0**-11), Q.Q4_0: blocks / 8 * (1 + 2.0**-8)}
    return np.broadcast_to(step[qtype], (blocks.shape[0], 32)).reshape(expected.shape)


@pytest.mark.parametrize("outtype", WRITTEN)
@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma"])
def test_dequantized_values_match_the_checkpoint(kind, outtype, model_of, exported) -> None:
    model_dir = model_of(kind)
    got = tensors(exported(model_dir, outtype).path)
    for name, want in _expected_tensors(model_dir).items():
        t = got[name]
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
        if t.tensor_type == Q.F32:
            np.testing.assert_array_equal(values, want, err_msg=name)
        elif t.tensor_type == Q.F16:
            np.testing.assert_array_equal(values, want.astype(np.float16).astype(np.float32))
        elif t.tensor_type == Q.BF16:
            bf16 = torch.from_numpy(want).bfloat16().float().numpy()
            np.testing.assert_array_equal(values, bf16, err_msg=name)
        else:
            err = np.abs(values - want)
            assert (err <= _error_bound(want, t.tensor_type) + 1e-12).all(), name
            # the very bytes the gguf package's quantizer makes of the whole tensor
            ref = gguf.quants.quantize(want, t.tensor_type)
            np.testing.assert_array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1), name)


def test_streaming_in_small_chunks_writes_the_same_file(tiny_qwen2, exported, tmp_path) -> None:
    whole = exported(tiny_qwen2, "q8_0").path  # named after the folder, like this one
    chunked = export_gguf(tiny_qwen2, tmp_path / "m.gguf", "q8_0", chunk_bytes=512)
    assert chunked.path.read_bytes() == whole.read_bytes()


def test_a_bf16_checkpoint_keeps_its_bits(tiny_qwen2, tmp_path: Path) -> None:
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    d = tmp_path / "bf16"
    shutil.copytree(tiny_qwen2, d)
    w = {k: v.bfloat16() for k, v in load_torch(str(d / "model.safetensors")).items()}
    save_torch(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, 2)
    for outtype, qtype in (("bf16", Q.BF16), ("f32", Q.F32)):
        got = tensors(export_gguf(d, tmp_path / f"{outtype}.gguf", outtype).path)
        for name, v in w.items():
            t = got[names.get_name(name, try_suffixes=(".weight", ".bias"))]
            assert t.tensor_type == (qtype if v.ndim == 2 else Q.F32)
            values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(v.shape)
            np.testing.assert_array_equal(values, v.float().numpy(), err_msg=name)


def test_a_tied_head_in_the_checkpoint_is_not_written(tiny_llama, exported, tmp_path) -> None:
    d = tmp_path / "tied"
    shutil.copytree(tiny_llama, d)
    w = load_file(str(d / "model.safetensors"))
    assert "lm_head.weight" not in w  # transformers leaves the tied copy out
    w["lm_head.weight"] = w["model.embed_tokens.weight"].copy()  # some checkpoints keep it
    save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    path = export_gguf(d, tmp_path / "m.gguf", "f32").path
    assert "output.weight" not in tensors(path)
    ids = prompt_ids(8)
    np.testing.assert_array_equal(
        llama_logits(path, ids), llama_logits(exported(tiny_llama, "f32").path, ids)
    )


def test_rows_a_block_cannot_hold_fall_back_to_f16(tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("gguf-odd")
    model = save_random_model("llama", out, hidden_size=48, intermediate_size=96, head_dim=12)
    result = export_gguf(model, out / "m.gguf", "q8_0")
    got = tensors(result.path)
    for name, t in got.items():
        width = int(t.shape[0])
        if len(t.shape) == 1:
            assert t.tensor_type == Q.F32, name
        elif width % 32:
            assert t.tensor_type == Q.F16, name
            assert "divisible by 32, has 48" in result.fallbacks[name]
        else:
            assert t.tensor_type == Q.Q8_0 and name not in result.fallbacks, name
    assert got["blk.0.ffn_down.weight"].tensor_type == Q.Q8_0  # 96 wide: Q8_0 holds it
    assert got["token_embd.weight"].tensor_type == Q.F16
    ids = prompt_ids(16)
    assert np.abs(llama_logits(result.path, ids) - hf_logits(model, ids)).max() < 0.6


# ------------------------------------------------------------------------------ llama.cpp runs it


@pytest.mark.parametrize("outtype, tolerance", [("f32", 0.03), ("f16", 0.06)])
def test_llama_cpp_logits_match_transformers(arch_model, exported, outtype, tolerance) -> None:
    ids = prompt_ids(16)
    ref = hf_logits(arch_model, ids)
    got = llama_logits(exported(arch_model, outtype).path, ids)
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err < tolerance, f"max |logit difference| {err:.3g} (logits' std {ref.std():.2f})"


@pytest.mark.parametrize("outtype", ["f16", "bf16", "q8_0"])
def test_llama_cpp_greedy_tokens_match_transformers(memorized, outtype, tmp_path) -> None:
    """On a model that learned the corpus (each next token ahead by several logits, well
    beyond what rounding to these types moves a logit, so no near-tie decides), llama.cpp's
    greedy tokens are transformers', which continue each sentence."""
    model, cases = memorized
    path = export_gguf(model, tmp_path / "m.gguf", outtype).path
    for prompt, want in cases:
        assert llama_greedy(path, prompt, 12) == want


KQUANTS = {  # mix → the type of most of its weights, general.file_type
    "q4_k_m": (Q.Q4_K, FT.MOSTLY_Q4_K_M),
    "q5_k_m": (Q.Q5_K, FT.MOSTLY_Q5_K_M),
    "q6_k": (Q.Q6_K, FT.MOSTLY_Q6_K),
}
K_RMS = {Q.Q4_K: 0.12, Q.Q5_K: 0.06, Q.Q6_K: 0.03}  # RMS error / weights' std: ~1.7 x measured


@pytest.mark.parametrize("outtype", KQUANTS)
def test_k_quants_are_made_by_llama_cpp(wide_model: Path, outtype: str, tmp_path) -> None:
    main, file_type = KQUANTS[outtype]
    result = export_gguf(wide_model, tmp_path / "m.gguf", outtype)
    assert _leftovers(tmp_path) == ["m.gguf"]  # the F16 intermediate is gone
    got = tensors(result.path)
    assert fields(result.path)["general.file_type"] == file_type
    assert result.tensor_types == {n: t.tensor_type.name for n, t in got.items()}
    weights = {n: t for n, t in got.items() if len(t.shape) == 2}
    assert all(t.tensor_type == Q.F32 for n, t in got.items() if n not in weights)
    counts = Counter(t.tensor_type for t in weights.values())
    assert counts.most_common(1)[0][0] == main and set(counts) <= {main, Q.Q6_K}, counts
    assert got["output.weight"].tensor_type == Q.Q6_K  # every llama.cpp mix keeps it at Q6_K
    for name, want in _expected_tensors(wide_model).items():
        t = got[name]
        if name in weights:
            values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
            rms = np.sqrt(np.mean((values - want) ** 2)) / want.std()
            assert rms < K_RMS[t.tensor_type], (name, t.tensor_type.name, rms)


def test_the_llama_cpp_build_quantizes_as_the_library_does(wide_model: Path, tmp_path) -> None:
    """famous's one llama.cpp build (llama-server's, ``provision.llama_server_home``) has
    ``llama-quantize``; given to the export it writes the file llama-cpp-python's library
    writes, tensor for tensor (the same llama.cpp)."""
    from famous.runtimes.components import installed_program
    from provision import env_var, llama_server_home

    with env_var("FAMOUS_HOME", str(llama_server_home())):
        program = installed_program("llama-quantize")
    assert program is not None
    by_program = export_gguf(wide_model, tmp_path / "p.gguf", "q4_k_m", quantizer=program)
    by_library = export_gguf(wide_model, tmp_path / "l.gguf", "q4_k_m")
    assert _leftovers(tmp_path) == ["l.gguf", "p.gguf"]
    ours, theirs = tensors(by_program.path), tensors(by_library.path)
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.tensor_type == theirs[name].tensor_type, name
        assert np.array_equal(tensor.data, theirs[name].data), name
    with pytest.raises(GGUFExportError, match="quantizer failed"):
        export_gguf(wide_model, tmp_path / "x.gguf", "q6_k", quantizer=Path("/bin/false"))


def test_quality_and_size_follow_the_bits(wide_model: Path, tmp_path: Path) -> None:
    ids = prompt_ids(32)
    ref = hf_logits(wide_model, ids)
    size, div = {}, {}
    for t in ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"):
        result = export_gguf(wide_model, tmp_path / f"{t}.gguf", t)
        size[t], div[t] = result.size_bytes, kl(ref, llama_logits(result.path, ids))
    order = ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m"]
    assert [div[t] for t in order] == sorted(div[t] for t in order), div
    assert div["q8_0"] < 1e-3, div
    sizes = [size[t] for t in ["f32", *order]]
    assert sizes == sorted(sizes, reverse=True), size
    for t, bits in (("f16", 16), ("q8_0", 8.5), ("q6_k", 6.5625), ("q4_0", 4.5)):
        assert size[t] / size["f32"] == pytest.approx(bits / 32, rel=0.05), t


def test_inspect_reads_back_what_the_gguf_package_reads(tiny_qwen2, exported) -> None:
    from famous.genai.export.gguf_inspect import metadata, tensor_types

    path = exported(tiny_qwen2, "q4_0").path
    f = fields(path)
    assert tensor_types(path) == {n: t.tensor_type.name for n, t in tensors(path).items()}
    meta = metadata(path)
    assert set(meta) == set(f)
    for key, value in f.items():  # long arrays (tokens, merges) are summarized by length
        want = f"<{len(value)} items>" if isinstance(value, list) and len(value) > 16 else value
        assert meta[key] == want, key
    keys = ("general.architecture", "qwen2.block_count")
    assert metadata(path, keys) == {"general.architecture": "qwen2", "qwen2.block_count": 2}


# ------------------------------------------------------------------------------ per-tensor types


def test_tensor_type_chooses_per_role(tiny_qwen2: Path, tmp_path: Path) -> None:
    roles = []

    def pick(role):
        roles.append(role)
        return "q4_0" if role.component == "feed_forward" else None

    result = export_gguf(tiny_qwen2, tmp_path / "m.gguf", "q8_0", tensor_type=pick)
    got = tensors(result.path)
    asked = {r.gguf_name: (r.component, r.block) for r in roles}
    want = {"token_embd.weight": ("embedding", None), "output.weight": ("lm_head", None)}
    for i in range(2):
        for p in ("attn_q", "attn_k", "attn_v", "attn_output"):
            want[f"blk.{i}.{p}.weight"] = ("attention", i)
        for p in ("ffn_gate", "ffn_up", "ffn_down"):
            want[f"blk.{i}.{p}.weight"] = ("feed_forward", i)
    assert asked == want  # every 2-D weight, nothing else (norms and biases stay F32)
    for name, t in got.items():
        kind = want.get(name, ("norm", None))[0]
        expected = {"feed_forward": Q.Q4_0, "norm": Q.F32}.get(kind, Q.Q8_0)
        assert t.tensor_type == expected, name
    assert np.isfinite(llama_logits(result.path, prompt_ids(8))).all()


def test_recipe_overrides_become_tensor_types(tiny_qwen2: Path, tmp_path: Path) -> None:
    recipe = Recipe(
        name="mixed",
        default=QuantSpec(dtype="int4"),
        embedding=QuantSpec(dtype="int8"),
        lm_head=QuantSpec(dtype="fp16"),
        blocks={-1: QuantSpec(dtype="int8")},  # the last of the two blocks
    )
    got = tensors(export_recipe_gguf(tiny_qwen2, tmp_path / "m.gguf", recipe).path)
    assert got["token_embd.weight"].tensor_type == Q.Q8_0
    assert got["output.weight"].tensor_type == Q.F16
    for name, t in got.items():
        if name.startswith("blk.") and len(t.shape) == 2:
            assert t.tensor_type == (Q.Q4_0 if name.startswith("blk.0.") else Q.Q8_0), name


# ------------------------------------------------------------------------------ refusals


def test_architectures_famous_does_not_map_are_refused(tiny_llama, tmp_path):
    """Every family famous authors has a GGUF architecture; another model_type (here a
    Llama folder relabelled as transformers' Mamba) is refused by name."""
    kind = "mamba"
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    conf = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**conf, "model_type": kind}))
    with pytest.raises(UnsupportedModelError) as e:
        export_gguf(model, tmp_path / "out" / "m.gguf")
    message = str(e.value)
    assert repr(kind) in message
    assert all(f"{a}," in message for a in ("llama", "mistral", "qwen2", "qwen3"))
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("kind", "window"),
    [
        ("mistral", {"sliding_window": 16}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 0}),
    ],
)
def test_a_sliding_window_llama_cpp_cannot_run_becomes_the_declared_context(
    kind, window, tmp_path
) -> None:
    """llama.cpp's llama and qwen2 graphs never read ``<arch>.attention.sliding_window``,
    and within the window full attention is the windowed model. So the GGUF declares the
    window as its context, says so in a warning naming the field, and within that context
    llama.cpp answers like transformers' windowed model; past it, the same file would
    attend over everything (which is why the context is capped)."""
    windowed = save_random_model(kind, tmp_path / "windowed", **window)
    result = export_gguf(windowed, tmp_path / "m.gguf", "f32")
    meta = fields(result.path)
    arch = LLAMA_CPP_ARCH[kind]
    assert meta[f"{arch}.context_length"] == 16
    assert any("sliding_window 16" in w and repr(arch) in w for w in result.warnings)
    within = prompt_ids(16)
    got = llama_logits(result.path, within)
    assert np.abs(got - hf_logits(windowed, within)).max() < 0.03
    longer = prompt_ids(48)
    past = np.abs(llama_logits(result.path, longer) - hf_logits(windowed, longer))[16:].max()
    assert past > 1.0, f"past the window llama.cpp differs from the windowed model by {past}"
    full = with_config(windowed, tmp_path / "full", sliding_window=None)
    full_meta = fields(export_gguf(full, tmp_path / "full.gguf", "f32").path)
    assert (
        full_meta[f"{arch}.context_length"]
        == json.loads((windowed / "config.json").read_text())["max_position_embeddings"]
    )


def test_bad_options_are_refused_before_anything_is_written(tiny_qwen2, tmp_path) -> None:
    out = tmp_path / "m.gguf"
    with pytest.raises(GGUFExportError, match="unknown GGUF type 'q3_k'") as e:
        export_gguf(tiny_qwen2, out, "q3_k")
    assert all(t in str(e.value) for t in GGUF_TYPES)
    with pytest.raises(GGUFExportError, match="'q4_k_m' is not one famous writes"):
        export_gguf(tiny_qwen2, out, "q8_0", tensor_type=lambda role: "q4_k_m")
    assert _leftovers(tmp_path) == []
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_gguf(tiny_qwen2, out, "f16")
    assert out.read_bytes() == b"keep me"
    assert export_gguf(tiny_qwen2, out, "f16", overwrite=True).path == out
    assert fields(out)["general.architecture"] == "qwen2"
    out.unlink()
    # recipes llama.cpp cannot run: weight-only GGUF types, Q4_0's blocks of 32
    for recipe, refusal in (("dynamic-int8", "dynamic int8"), ("int4-b128", "blocks of 128")):
        with pytest.raises(RecipeError, match=refusal):
            export_recipe_gguf(tiny_qwen2, out, recipe)
    assert _leftovers(tmp_path) == []


def test_failures_leave_no_partial_file(tiny_qwen2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # found while writing the metadata: RoPE scaling llama.cpp would not apply
    dynamic = tmp_path / "dynamic"
    shutil.copytree(tiny_qwen2, dynamic)
    cfg = json.loads((dynamic / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6}
    (dynamic / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GGUFExportError, match="'dynamic'"):
        export_gguf(dynamic, out / "m.gguf")
    assert _leftovers(out) == []
    # a tensor no llama.cpp name exists for
    extra = tmp_path / "extra"
    shutil.copytree(tiny_qwen2, extra)
    w = load_file(str(extra / "model.safetensors"))
    w["model.layers.0.mlp.adapter.weight"] = np.zeros((4, 4), dtype=np.float32)
    save_file(w, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(GGUFExportError, match=r"model\.layers\.0\.mlp\.adapter\.weight"):
        export_gguf(extra, out / "m.gguf")
    assert _leftovers(out) == []

    # a failure half-way through the tensors, famous's writer or llama.cpp's quantizer after it
    def disk_full(name: str, done: int, total: int) -> None:
        if done == 3:
            raise OSError("No space left on device")

    for outtype in ("q8_0", "q4_k_m"):
        with pytest.raises(OSError, match="No space left"):
            export_gguf(tiny_qwen2, out / "m.gguf", outtype, progress=disk_full)
        assert _leftovers(out) == [], outtype


# ------------------------------------------------------------------------------ famous build


def test_famous_build_installs_gguf_options_llama_cpp_loads(tiny_qwen2, famous_home) -> None:
    from typer.testing import CliRunner

    from famous.cli.main import app

    runner = CliRunner()
    argv = ["build", str(tiny_qwen2), "--target", "gguf", "--name", "tiny-gguf", "-f", "json"]
    r = runner.invoke(app, [*argv, "-q", "q8_0", "-q", "int4-mixed"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["engine"] == "cpu" and [o["name"] for o in data["options"]] == [
        "q8_0",
        "int4-mixed",
    ]
    for option in data["options"]:
        path = Path(option["path"])
        assert option["size_bytes"] == path.stat().st_size
        got = tensors(path)
        assert option["tensor_types"] == dict(Counter(t.tensor_type.name for t in got.values()))
        with llama(path) as llm:
            assert llm.n_vocab() == _hf_config(tiny_qwen2).vocab_size
    r = runner.invoke(app, ["engines", "tiny-gguf"])
    assert r.exit_code == 0 and "cpu" in r.output, r.output
    # a recipe llama.cpp cannot run: refused before anything is written
    r = runner.invoke(app, ["build", str(tiny_qwen2), "--name", "nope", "-q", "dynamic-int8"])
    assert r.exit_code == 2 and "dynamic int8" in r.output, r.output
    assert not (famous_home / "packages" / "nope").exists()
    assert not list((famous_home / "packages").glob(".build-*"))
