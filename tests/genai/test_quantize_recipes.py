"""Quantization recipes (``famous.genai.quantize``): the presets the README lists, recipe
files and the refusals that name what is wrong, what each target can run, and applying a
recipe: which module got which scheme, dequantized weights within each scheme's rounding
bound, and the quantized model's logits against transformers' fp32 ones."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from genai_helpers import save_hf_model, train_tokenizer
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config
from famous.genai.quantize import PRESETS, QuantSpec, Recipe, RecipeError, get_recipe
from famous.genai.quantize.modules import (
    QuantEmbedding,
    QuantizedWeight,
    QuantLinear,
    apply_recipe,
    apply_to_linears,
)

N_BLOCKS = 4

# (dtype, granularity, block size, activations) of each scheme, as the README words them
FP32, FP16, BF16 = ((d, None, None, "none") for d in ("fp32", "fp16", "bf16"))
I8 = ("int8", "channel", None, "none")  # "weight-only, per channel"
I8_B32 = ("int8", "block", 32, "none")  # GGUF Q8_0
I4 = ("int4", "block", 32, "none")  # "blockwise 32"
I4_B128 = ("int4", "block", 128, "none")
DYN = ("int8", "channel", None, "int8")
PARTS = ("embedding", "attention", "feed_forward", "lm_head")


def _everywhere(s):
    return {p: [s] * N_BLOCKS if p in ("attention", "feed_forward") else s for p in PARTS}


def _blocks(default, first_last=None, embedding=I8, lm_head=I8):
    per_block = [default] * N_BLOCKS
    if first_last:
        per_block[0] = per_block[-1] = first_last
    return {
        "embedding": embedding,
        "attention": per_block,
        "feed_forward": per_block,
        "lm_head": lm_head,
    }


README = {  # README: "Presets: fp32, fp16, bf16, int8 (weight-only, per channel), int4 …"
    "fp32": _everywhere(FP32),
    "fp16": _everywhere(FP16),
    "bf16": _everywhere(BF16),
    "int8": _everywhere(I8),
    "int4": _blocks(I4),  # "blockwise 32; embedding and LM head int8"
    "int4-b128": _blocks(I4_B128),
    "int4-mixed": _blocks(I4, first_last=I8),  # "first and last blocks int8"
    "dynamic-int8": _blocks(DYN),
    "q8_0": _everywhere(I8_B32),
    "q4_0": _everywhere(I4),
}
K_QUANTS = ("q4_k_m", "q5_k_m", "q6_k")  # "K-quants through llama.cpp's own quantizer"


def _scheme(spec: QuantSpec) -> tuple:
    return (spec.dtype, spec.granularity, spec.block_size, spec.activations)


def _resolved(recipe: Recipe) -> dict:
    out = {}
    for part in PARTS:
        if part in ("attention", "feed_forward"):
            out[part] = [_scheme(recipe.spec_for(part, i, N_BLOCKS)) for i in range(N_BLOCKS)]
        else:
            out[part] = _scheme(recipe.spec_for(part))
    return out


@pytest.fixture(scope="session")
def four_blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untied Qwen2 of four blocks (so first, middle and last blocks all exist)."""
    out = tmp_path_factory.mktemp("quant-four-blocks")
    cfg = fake_hf_config("qwen2")
    vocab = train_tokenizer(out)
    cfg.update(vocab_size=vocab, num_hidden_layers=N_BLOCKS, initializer_range=0.2)
    save_hf_model(cfg, out)
    return out


# ------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("name", list(README) + list(K_QUANTS))
def test_presets_are_what_the_readme_says(name: str) -> None:
    recipe = get_recipe(name)
    assert recipe.name == name and recipe is PRESETS[name]
    if name in K_QUANTS:
        assert recipe.gguf_type == name and recipe.gguf_outtype() == name
        return
    assert recipe.gguf_type is None
    assert _resolved(recipe) == README[name]


def test_presets_are_exactly_the_readmes() -> None:
    assert set(PRESETS) == set(README) | set(K_QUANTS)


@pytest.mark.parametrize(
    "spelling, name",
    [("F16", "fp16"), ("float16", "fp16"), ("bfloat16", "bf16"), ("f32", "fp32"), ("INT8", "int8")],
)
def test_gguf_and_torch_spellings_name_the_same_preset(spelling: str, name: str) -> None:
    assert get_recipe(spelling) is PRESETS[name]


def test_a_recipe_object_passes_through() -> None:
    recipe = Recipe(name="mine", default=QuantSpec(dtype="int8"))
    assert get_recipe(recipe) is recipe


def test_gguf_types_of_each_scheme() -> None:
    want = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0", "q8_0": "q8_0"}
    want |= {"int4": "q4_0", "q4_0": "q4_0", "int4-mixed": "q4_0"}
    assert {name: get_recipe(name).gguf_outtype() for name in want} == want
    mixed = get_recipe("int4-mixed")
    assert [mixed.gguf_tensor_type("attention", i, N_BLOCKS) for i in range(N_BLOCKS)] == [
        "q8_0",
        "q4_0",
        "q4_0",
        "q8_0",
    ]
    assert mixed.gguf_tensor_type("embedding", None, N_BLOCKS) == "q8_0"


# ------------------------------------------------------------------------------ recipe files


def test_overrides_resolve_most_specific_first(tmp_path: Path) -> None:
    text = """
description: every kind of override
default: {dtype: int8}
embedding: {dtype: fp16}
attention: {dtype: int4, block_size: 128}
feed_forward: {dtype: int8, granularity: block, block_size: 64}
blocks:
  1: {dtype: bf16}
  -1: {dtype: fp32}
"""
    path = tmp_path / "my-recipe.yaml"
    path.write_text(text)
    recipe = get_recipe(str(path))
    assert recipe.name == "my-recipe"  # the file's stem
    assert _resolved(recipe) == {
        "embedding": FP16,
        "attention": [I4_B128, BF16, I4_B128, FP32],  # block → component → default
        "feed_forward": [("int8", "block", 64, "none"), BF16, ("int8", "block", 64, "none"), FP32],
        "lm_head": I8,  # no override: the default (blocks never reach the head)
    }
    json_path = tmp_path / "same.json"  # YAML's superset: a JSON recipe reads the same
    json_path.write_text(recipe.model_copy(update={"name": "same"}).model_dump_json())
    assert get_recipe(str(json_path)) == recipe.model_copy(update={"name": "same"})


@pytest.mark.parametrize(
    "text, names",
    [
        ("default: {dtype: int8}\natention: {dtype: int4}\n", ["atention", "Extra inputs"]),
        ("default: {dtype: int3}\n", ["default.dtype", "'int8' or 'int4'"]),
        ("feed_forward: {dtype: int4, granularity: channel}\n", ["feed_forward", "blockwise"]),
        (
            "default: {dtype: int8, granularity: block, block_size: 12}\n",
            ["default", "multiple of 8"],
        ),
        ("lm_head: {dtype: int4, activations: int8}\n", ["lm_head", "need int8 weights"]),
        ("embedding: {dtype: fp16, block_size: 32}\n", ["embedding", "is a cast"]),
        ("blocks: {first: {dtype: int8}}\n", ["blocks.first", "integer"]),
        ("gguf_type: q3_k\n", ["gguf_type", "'q4_k_m'"]),
        ("- int8\n- int4\n", ["is a mapping", "not a list"]),
        ("default: {dtype: int8\n", ["not valid YAML"]),
    ],
)
def test_invalid_recipe_files_are_refused_naming_the_field(text, names, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as e:
        get_recipe(str(path))
    assert str(path) in str(e.value)
    for name in names:
        assert name in str(e.value)
    r = CliRunner().invoke(app, ["quantize", str(tmp_path), "-r", str(path)])
    assert r.exit_code == 2 and names[0] in r.stderr, r.output


def test_an_unknown_recipe_lists_the_presets() -> None:
    with pytest.raises(RecipeError, match="unknown recipe 'int3'") as e:
        get_recipe("int3")
    assert all(name in str(e.value) for name in PRESETS)


# ------------------------------------------------------------------------------ targets


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in K_QUANTS])
def test_torch_runs_every_preset_but_the_k_quants(name: str) -> None:
    get_recipe(name).check_target("torch")


@pytest.mark.parametrize("name", K_QUANTS)
def test_k_quants_exist_only_as_gguf(name: str) -> None:
    with pytest.raises(RecipeError, match="--target gguf"):
        get_recipe(name).check_target("torch")
    get_recipe(name).check_target("gguf")


@pytest.mark.parametrize(
    "recipe, refusal",
    [
        *((name, None) for name in ("fp32", "fp16", "bf16", "int8", "int4", "int4-mixed", "q8_0")),
        *((name, None) for name in ("q4_0", *K_QUANTS)),
        ("dynamic-int8", "dynamic int8"),  # GGUF types are weight-only
        ("int4-b128", "blocks of 128"),  # Q4_0 holds blocks of 32
        (Recipe(default=QuantSpec(dtype="int8", block_size=64)), "blocks of 64"),
        (Recipe(gguf_type="q4_k_m", attention=QuantSpec(dtype="int8")), "overrides cannot"),
        (Recipe(gguf_type="q6_k", default=QuantSpec(dtype="int4")), "overrides cannot"),
    ],
)
def test_what_gguf_can_run(recipe, refusal) -> None:
    recipe = get_recipe(recipe)
    if refusal is None:
        recipe.check_target("gguf")
        return
    with pytest.raises(RecipeError, match=refusal) as e:
        recipe.check_target("gguf")
    assert "use" in str(e.value).lower()  # each refusal says what to use instead


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(RecipeError, match=r"unknown target 'tensorrt'.*torch, gguf"):
        get_recipe("int8").check_target("tensorrt")


# ------------------------------------------------------------------------------ applying


def test_a_recipe_reaches_the_modules_it_names(four_blocks: Path) -> None:
    model = load_model(four_blocks, max_seq_len=64)
    done = dict(apply_recipe(model, get_recipe("int4-mixed")))
    assert isinstance(model.embed, QuantEmbedding) and _scheme(model.embed.spec) == I8
    assert isinstance(model.lm_head, QuantLinear) and _scheme(model.lm_head.spec) == I8
    want = {"embed": model.embed.spec.label, "lm_head": model.lm_head.spec.label}
    for i, layer in enumerate(model.layers):
        scheme = I8 if i in (0, N_BLOCKS - 1) else I4
        for path, module in (
            ("attn.qkv", layer.attn.qkv),
            ("attn.o", layer.attn.o),
            ("ffn.gate_up", layer.ffn.gate_up),
            ("ffn.down", layer.ffn.down),
        ):
            assert isinstance(module, QuantLinear) and _scheme(module.spec) == scheme, (i, path)
            want[f"layers.{i}.{path}"] = module.spec.label
        # norms are never quantized
        assert all(p.dtype == torch.float32 for p in layer.attn_norm.parameters())
    assert done == want
    plain = load_model(four_blocks, max_seq_len=64)
    assert apply_recipe(plain, get_recipe("fp32")) == []
    assert not any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in plain.modules())


def test_a_tied_head_follows_the_embedding(tiny_chat_model: Path) -> None:
    model = load_model(tiny_chat_model, max_seq_len=64)
    assert model.cfg.tie_word_embeddings and model.lm_head is None
    done = dict(apply_recipe(model, get_recipe("int4")))  # int8 embedding and head
    assert "lm_head" not in done and _scheme(model.embed.spec) == I8
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        logits, _ = model(ids, torch.arange(5), model.init_cache(1))
        x = model.norm(_hidden(model, ids))
    # the head multiplies by the embedding's own (quantized) weight
    torch.testing.assert_close(logits[0], x[0] @ model.embed.qweight.dequantize().T)


def _hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream before the final norm, through a forward hook."""
    seen = {}
    handle = model.norm.register_forward_hook(lambda m, args, out: seen.setdefault("x", args[0]))
    try:
        model(ids, torch.arange(ids.shape[1]), model.init_cache(1))
    finally:
        handle.remove()
    return seen["x"]


def _step_bound(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Per element, half a quantization step (s = max|w| / 127 per channel or block for int8,
    / 7 per block for int4), plus what storing a block's scale as fp16 moves |q| · s."""
    qmax = 127 if spec.dtype == "int8" else 7
    if spec.granularity == "channel":
        return (w.abs().amax(1, keepdim=True) / qmax / 2 * (1 + 1e-6)).expand_as(w)
    b = spec.block_size
    pad = (-w.shape[1]) % b
    blocks = F.pad(w, (0, pad)).reshape(w.shape[0], -1, b).abs().amax(2, keepdim=True)
    s = blocks / qmax
    bound = s / 2 + (qmax + 1) * s * 2.0**-11
    return bound.expand(-1, -1, b).reshape(w.shape[0], -1)[:, : w.shape[1]]


@pytest.mark.parametrize("scheme", [I8, I8_B32, ("int8", "block", 128, "none"), I4, I4_B128])
def test_integer_weights_are_within_half_a_step(scheme) -> None:
    dtype, granularity, block_size, _ = scheme
    spec = QuantSpec(dtype=dtype, granularity=granularity, block_size=block_size)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 200, generator=g)  # 200 columns: a partial last block
    w[3, 17] = 9.0  # an outlier widens its channel's / block's step only
    q = QuantizedWeight(w, spec)
    err = (q.dequantize() - w).abs()
    assert (err <= _step_bound(w, spec)).all()
    assert err.max() > 0  # something was rounded
    rows = torch.tensor([[0, 3], [23, 3]])
    torch.testing.assert_close(q.rows(rows, torch.float32), q.dequantize()[rows])
    # the storage is real: bits / 8 per weight (of the last block padded full), plus at most
    # four bytes per scale
    byte = 1.0 if dtype == "int8" else 0.5
    padded = w.shape[1] if block_size is None else -(-w.shape[1] // block_size) * block_size
    scales = w.shape[0] * (1 if block_size is None else padded // block_size)
    assert byte * w.numel() <= q.nbytes() <= byte * w.shape[0] * padded + 4 * scales


@pytest.mark.parametrize("dtype, cast", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_casts_round_like_torch(dtype: str, cast: torch.dtype) -> None:
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    q = QuantizedWeight(w, QuantSpec(dtype=dtype))
    assert torch.equal(q.dequantize(), w.to(cast).float())
    assert q.nbytes() == w.numel() * 2


def test_dynamic_int8_stays_close_to_the_float_product() -> None:
    g = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(64, 96)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(96, 64, generator=g) * 0.2)
    q = QuantLinear(linear, QuantSpec(dtype="int8", activations="int8"))
    small = torch.randn(4, 64, generator=g)
    for x in (small, torch.randn(40, 64, generator=g)):  # vector-sized, and integer-matmul-sized
        with torch.no_grad():
            want, got = linear(x), q(x)
        rel = (got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
        assert rel < 0.02, (x.shape, float(rel))
    with torch.no_grad():  # the same rows give the same result on either path
        torch.testing.assert_close(q(torch.cat([small] * 10))[:4], q(small), rtol=1e-5, atol=1e-5)


def _kl_top1(ref: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    lp, lq = ref.double().log_softmax(-1), got.double().log_softmax(-1)
    kl = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).mean()
    return float(kl), float((ref.argmax(-1) == got.argmax(-1)).double().mean())


@pytest.fixture(scope="session")
def reference_logits(four_blocks: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(four_blocks, dtype=torch.float32).eval()
    ids = torch.randint(
        3, hf.config.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return ids, hf(ids).logits


# recipe → (most KL from transformers' fp32 logits, least top-1 agreement)
CLOSE = {
    "fp16": (1e-4, 0.98),
    "bf16": (2e-3, 0.9),
    "int8": (0.02, 0.85),
    "dynamic-int8": (0.02, 0.85),
    "int4-mixed": (0.3, 0.5),
    "int4": (1.5, 0.15),
}


def test_quantized_models_stay_close_to_fp32(four_blocks: Path, reference_logits) -> None:
    ids, ref = reference_logits
    base = load_model(four_blocks, max_seq_len=64)
    kls = {}
    for name, (max_kl, min_top1) in CLOSE.items():
        model = copy.deepcopy(base)
        apply_recipe(model, get_recipe(name))
        with torch.no_grad():
            got = torch.cat(
                [model(row[None], torch.arange(32), model.init_cache(1))[0] for row in ids]
            )
        kls[name], top1 = _kl_top1(ref, got)
        assert kls[name] < max_kl and top1 >= min_top1, (name, kls[name], top1)
    # fewer bits, further from fp32
    order = ["fp16", "bf16", "int8", "int4-mixed", "int4"]
    assert [kls[n] for n in order] == sorted(kls[n] for n in order), kls


def test_encoder_linears_follow_block_overrides() -> None:
    """An encoder (BERT layout, as all-MiniLM-L6-v2's) gets the recipe's block overrides too:
    int4-mixed keeps its first and last layers int8."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    linears = [n for n, m in bert.named_modules() if isinstance(m, torch.nn.Linear)]
    assert apply_to_linears(bert, get_recipe("int4-mixed")) == len(linears)
    got = {n: _scheme(m.spec) for n, m in bert.named_modules() if isinstance(m, QuantLinear)}
    assert set(got) == set(linears)
    for name, scheme in got.items():
        if name.startswith("encoder.layer."):
            block = int(name.split(".")[2])
            assert scheme == (I8 if block in (0, 3) else I4), name
        else:
            assert scheme == I4, name  # the pooler: the default
