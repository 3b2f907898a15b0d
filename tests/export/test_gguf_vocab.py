"""The tokenizer in famous's GGUF (``famous.genai.export.gguf_vocab``): tokens, types, merges,
scores and special ids as the ``gguf`` package reads them, and llama.cpp's own tokenizer
(llama-cpp-python, ``vocab_only``) splitting and joining text exactly as the ``tokenizers``
tokenizer it came from — for byte-level BPE with each pre-tokenizer famous names, for
SentencePiece-style BPE with byte fallback, and for Unigram. Every tokenizer is trained here."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from export_helpers import CORPUS
from gguf_helpers import fields, llama, llama_detokenize, save_random_model, with_tokenizer
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from famous.genai.errors import UnsupportedModelError
from famous.genai.export.gguf import export_gguf

ROWS = 512  # embedding rows of the model every tokenizer here is paired with
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # llama.cpp's types
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
BYTES = [f"<0x{i:02X}>" for i in range(256)]
ADDED_SPECIAL, ADDED_PLAIN = "<|im_start|>", "<|tool|>"
TRAINING = [
    *CORPUS,
    *["I'm sure you're right, they'll see.   Spaces\t\ttabs\n\nnew lines 2024"] * 10,
    *["héllo wörld ça va? 中文 日本語"] * 10,
]
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "héllo wörld ça va? 中文 日本語 Ελληνικά",
    "emoji 👋🏽 🚀 and a ZWJ sequence 👩\u200d💻!",
    "a  b   c\t\td\n\n e   ",
    " leading space",
    "12345 678 9.75 2024",
    "I'm sure you're right, they'll see. DON'T",
    "<s>hello</s>",
    "x<s>y<|im_start|>z",
    "<|tool|> call(1)",
    "",
]
# The pre-tokenizer regexes of Llama 3's and Qwen2's tokenizer.json (Meta's, Alibaba's).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(pre, ignore_merges: bool = False) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING, trainer)
    return tok


def _split_then_bytes(regex: str):
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _sentencepiece_bpe(style: str) -> Tokenizer:
    """BPE with byte fallback, its <0xNN> tokens ordinary vocabulary entries as in Llama 2's
    tokenizer.json; spaces become ▁ by a normalizer (Llama 2) or a Metaspace pre-tokenizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if style == "normalizer":
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS + BYTES, show_progress=False
    )
    tok.train_from_iterator(TRAINING, trainer)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in BYTES]
    return Tokenizer.from_str(json.dumps(data))


def _unigram() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(TRAINING, trainer)
    return tok


def _bos_template(tok: Tokenizer) -> None:
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )


# variant → (tokenizer, tokenizer_config extra, llama.cpp tokenizer model, pre-tokenizer name)
VARIANTS = {
    "gpt-2": (
        lambda: _byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False)),
        {},  # bos comes from the post-processor (added below)
        "gpt2",
        "gpt-2",
    ),
    "llama-bpe": (
        lambda: _byte_level(_split_then_bytes(LLAMA3_SPLIT), ignore_merges=True),
        {"add_bos_token": False},
        "gpt2",
        "llama-bpe",
    ),
    "qwen2": (
        lambda: _byte_level(_split_then_bytes(QWEN2_SPLIT)),
        {"add_bos_token": False},
        "gpt2",
        "qwen2",
    ),
    "smollm": (
        lambda: _byte_level(
            pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False),
                ]
            )
        ),
        {"add_bos_token": False},
        "gpt2",
        "smollm",
    ),
    "spm-llama2": (
        lambda: _sentencepiece_bpe("normalizer"),
        {"add_bos_token": True},
        "llama",
        None,
    ),
    "spm-metaspace": (
        lambda: _sentencepiece_bpe("metaspace"),
        {"add_bos_token": False},
        "llama",
        None,
    ),
    "unigram": (_unigram, {"add_bos_token": False}, "t5", None),
}
SENTENCEPIECE = {"spm-llama2", "spm-metaspace", "unigram"}
# A Metaspace pre-tokenizer puts ▁ before a piece of text only when it does not start with a
# space already; llama.cpp's SentencePiece and Unigram tokenizers always do (as Llama 2's
# normalizer does): text whose pieces start with whitespace cannot agree there.
PREFIX_SPACE_EVERYWHERE = {"spm-metaspace", "unigram"}


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vocab-weights")
    return save_random_model("qwen2", out, tokenizer=False, vocab_size=ROWS)


@pytest.fixture(scope="session", params=list(VARIANTS))
def vocab(request: pytest.FixtureRequest, weights: Path, tmp_path_factory):
    """(variant, its tokenizer, famous's GGUF of it)."""
    variant = request.param
    make, extra, _, _ = VARIANTS[variant]
    tok = make()
    if variant in ("gpt-2", "spm-llama2"):
        _bos_template(tok)
    tok.add_special_tokens([ADDED_SPECIAL])
    # matched in the raw text, as llama.cpp matches user-defined tokens (a normalized one
    # would be looked for after Llama 2's normalizer has put ▁ in place of its spaces)
    tok.add_tokens([AddedToken(ADDED_PLAIN, special=False, normalized=False)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", **extra}
    model = with_tokenizer(weights, tmp_path_factory.mktemp(f"vocab-{variant}"), tok, config)
    result = export_gguf(model, model / "m.gguf", "f32")
    assert result.warnings == []
    return variant, tok, result.path


def test_tokens_types_and_special_ids(vocab) -> None:
    variant, tok, path = vocab
    f = fields(path)
    tj = json.loads(tok.to_str())
    _, _, model, pre = VARIANTS[variant]
    assert f["tokenizer.ggml.model"] == model
    assert f.get("tokenizer.ggml.pre") == pre
    by_id = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    n = len(by_id)
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == ROWS
    assert tokens[:n] == [by_id[i] for i in range(n)]
    assert len(set(tokens)) == ROWS  # the padding rows get names of their own
    added = {t["id"]: t["special"] for t in tj["added_tokens"]}
    for i in range(n):
        if i in added:
            want = CONTROL if added[i] else USER_DEFINED
        elif variant in SENTENCEPIECE and re.fullmatch(r"<0x[0-9A-F]{2}>", tokens[i]):
            want = BYTE
        else:
            want = NORMAL
        assert types[i] == want, (i, tokens[i])
    assert set(types[n:]) == {UNUSED}
    assert types[tok.token_to_id(ADDED_PLAIN)] == USER_DEFINED
    if variant.startswith("spm"):
        assert types.count(BYTE) == 256
    assert f["tokenizer.ggml.bos_token_id"] == tok.token_to_id("<s>")
    assert f["tokenizer.ggml.eos_token_id"] == tok.token_to_id("</s>")
    assert f["tokenizer.ggml.padding_token_id"] == tok.token_to_id("<pad>")
    with llama(path, vocab_only=True) as llm:
        assert llm.n_vocab() == ROWS
        assert (llm.token_bos(), llm.token_eos()) == (
            tok.token_to_id("<s>"),
            tok.token_to_id("</s>"),
        )


def test_merges_and_scores(vocab) -> None:
    variant, tok, path = vocab
    f = fields(path)
    tj = json.loads(tok.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj.get("merges", [])]
    if variant not in SENTENCEPIECE:
        assert f["tokenizer.ggml.merges"] == merges and len(merges) > 30
        assert "tokenizer.ggml.scores" not in f
        return
    assert "tokenizer.ggml.merges" not in f
    assert f["tokenizer.ggml.add_space_prefix"] is True
    scores = f["tokenizer.ggml.scores"]
    assert len(scores) == ROWS
    if variant == "unigram":  # the Unigram log-probabilities, which llama.cpp's UGM segments by
        assert scores[: len(tj["vocab"])] == pytest.approx([s for _, s in tj["vocab"]], 1e-6)
        assert f["tokenizer.ggml.unknown_token_id"] == tj["unk_id"]
        assert f["tokenizer.ggml.add_eos_token"] is False
        return
    # llama.cpp merges the highest-scoring pair first: each merge must outscore the later ones
    made = []
    for m in merges:
        token = m.replace(" ", "")
        if token not in made:
            made.append(token)
    ids = tok.get_vocab()
    merged = [scores[ids[t]] for t in made]
    assert len(merged) > 30 and all(a > b for a, b in itertools.pairwise(merged))


def _agrees_on(variant: str, text: str) -> bool:
    if variant not in PREFIX_SPACE_EVERYWHERE:
        return True
    pieces = re.split("|".join(re.escape(t) for t in [*SPECIALS, ADDED_SPECIAL, ADDED_PLAIN]), text)
    return not any(p[:1].isspace() for p in pieces)


def test_llama_cpp_tokenizes_like_tokenizers(vocab) -> None:
    variant, tok, path = vocab
    checked = 0
    with llama(path, vocab_only=True) as llm:
        for text in TEXTS:
            if not _agrees_on(variant, text):
                continue
            want = tok.encode(text, add_special_tokens=False).ids
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == want, text
            # with the special tokens each adds (bos where the tokenizer adds it, eos never)
            assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text).ids
            assert llama_detokenize(llm, want) == tok.decode(want, skip_special_tokens=False)
            checked += 1
    assert checked >= len(TEXTS) - 3
    bos = tok.token_to_id("<s>")
    assert (tok.encode("hi").ids[0] == bos) == (variant in ("gpt-2", "spm-llama2"))


def test_chat_template_from_each_place_transformers_keeps_it(weights, tmp_path) -> None:
    tok = _byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False))
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    base = {"bos_token": "<s>", "eos_token": "</s>"}
    places = {
        "string": ({**base, "chat_template": template}, None),
        "named": (
            {
                **base,
                "chat_template": [
                    {"name": "tool_use", "template": "{{ 'tools' }}"},
                    {"name": "default", "template": template},
                ],
            },
            None,
        ),
        "jinja-file": (base, template),  # transformers 5: chat_template.jinja
    }
    for name, (config, jinja) in places.items():
        model = with_tokenizer(weights, tmp_path / name, tok, config)
        if jinja:
            (model / "chat_template.jinja").write_text(jinja)
        path = export_gguf(model, tmp_path / f"{name}.gguf", "f32").path
        assert fields(path)["tokenizer.chat_template"] == template, name
        with llama(path, vocab_only=True) as llm:
            assert llm.metadata["tokenizer.chat_template"] == template, name
    model = with_tokenizer(weights, tmp_path / "none", tok, base)
    assert "tokenizer.chat_template" not in fields(export_gguf(model, tmp_path / "n.gguf").path)


def test_an_unknown_pre_tokenizer_is_written_as_default_with_a_warning(weights, tmp_path):
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(use_regex=False)]
    )
    model = with_tokenizer(weights, tmp_path / "m", _byte_level(pre), {"eos_token": "</s>"})
    result = export_gguf(model, tmp_path / "m.gguf", "f32")
    assert fields(result.path)["tokenizer.ggml.pre"] == "default"
    assert any("not one famous maps to llama.cpp" in w for w in result.warnings), result.warnings
    with llama(result.path, vocab_only=True) as llm:
        assert llm.n_vocab() == ROWS


def test_tokenizers_llama_cpp_cannot_run_are_refused(weights, tmp_path) -> None:
    out = tmp_path / "out"
    # WordPiece (BERT's)
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(TRAINING, trainers.WordPieceTrainer(vocab_size=200, show_progress=False))
    model = with_tokenizer(weights, tmp_path / "wordpiece", wp, {})
    with pytest.raises(UnsupportedModelError, match="BERT-style"):
        export_gguf(model, out / "m.gguf")
    # more tokens than the embedding has rows
    big = Tokenizer(models.BPE())
    big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    big.train_from_iterator(
        [*TRAINING, *(f"word{i} token{i}" for i in range(400))],
        trainers.BpeTrainer(
            vocab_size=700,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    n = big.get_vocab_size()
    assert n > ROWS
    model = with_tokenizer(weights, tmp_path / "big", big, {})
    with pytest.raises(
        UnsupportedModelError, match=f"{n} tokens but the model's embedding has {ROWS}"
    ):
        export_gguf(model, out / "m.gguf")
    # no tokenizer.json at all (a GGUF carries its tokenizer)
    (model / "tokenizer.json").unlink()
    with pytest.raises(UnsupportedModelError, match=r"no tokenizer\.json"):
        export_gguf(model, out / "m.gguf")
    assert not out.exists() or not any(out.iterdir())


def test_famous_reads_the_tokenizer_back_from_the_gguf_as_llama_cpp_runs_it(vocab) -> None:
    """A GGUF as famous's model source (``famous.genai.gguf_source.vocab``): the tokenizer
    rebuilt from ``tokenizer.ggml.*`` gives llama.cpp's ids and text; Unigram is refused by
    name."""
    from famous.genai.tokenizer import Tokenizer as FamousTokenizer

    variant, _, path = vocab
    if variant == "unigram":
        with pytest.raises(UnsupportedModelError, match=r"'t5'.*supported: gpt2"):
            FamousTokenizer(path)
        return
    ours = FamousTokenizer(path)
    with llama(path, vocab_only=True) as llm:
        for text in TEXTS:
            want = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ours.encode(text, add_special_tokens=False) == want, text
            assert ours.decode(want, skip_special_tokens=False) == llama_detokenize(llm, want)
            if not text.startswith("<s>"):  # famous does not add a second bos; llama.cpp does
                assert ours.encode(text) == llm.tokenize(text.encode(), special=True), text
