"""A ``tokenizers`` tokenizer and the special tokens / chat template from a GGUF's
``tokenizer.ggml.*`` metadata — the inverse of ``famous.genai.export.gguf_vocab``.

``gpt2`` (byte-level BPE): the token strings are already in byte-level spelling and the
merges are listed; ``tokenizer.ggml.pre`` names the split llama.cpp applies before BPE, and
famous builds the same split (``_PRE``). A name famous does not know is refused rather
than guessed, since a wrong split changes the ids.

``llama`` (SentencePiece BPE, byte fallback): no merges are stored, only a score per token
(llama.cpp merges the highest-scoring pair first). The merges are rebuilt from the scores —
every way to cut a token into two tokens, ranked by the whole token's score — which gives
``tokenizers``' BPE the same merge order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from famous.genai.errors import UnsupportedModelError
from famous.genai.gguf_pretokenizers import SPLIT_REGEXES

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from famous.genai.gguf_source.reader import GGUFFile

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values (gguf.TokenType)

# tokenizer.ggml.pre → (split regex or a pre-tokenizer kind, ignore_merges, NFC)
_PRE: dict[str, tuple[str, bool, bool]] = {
    "gpt-2": ("bytelevel", False, False),
    "smollm": ("digits+bytelevel", False, False),
    "llama-bpe": (SPLIT_REGEXES["llama-bpe"], True, False),
    "qwen2": (SPLIT_REGEXES["qwen2"], False, True),
}


def _byte_level(meta: dict[str, Any], tokens: list[str], file: str) -> Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    pre = meta.get("tokenizer.ggml.pre") or "gpt-2"
    if pre not in _PRE:
        raise UnsupportedModelError(
            f"{file}: GGUF pre-tokenizer {pre!r} is not one famous rebuilds "
            f"(supported: {', '.join(sorted(_PRE))}); llama.cpp can serve this model"
        )
    split, ignore_merges, nfc = _PRE[pre]
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    if split == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif split == "digits+bytelevel":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece(meta: dict[str, Any], tokens: list[str]) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    merges: list[tuple[float, int, int, tuple[str, str]]] = []
    for piece, i in vocab.items():
        for cut in range(1, len(piece)):
            a, b = piece[:cut], piece[cut:]
            if a in vocab and b in vocab:
                merges.append((-scores[i], vocab[a], vocab[b], (a, b)))
    merges.sort()
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    tok = Tokenizer(
        models.BPE(
            vocab,
            [m[3] for m in merges],
            unk_token=tokens[unk] if unk is not None else None,
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    steps = [normalizers.Prepend("▁")] if prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    return tok


def tokenizer_from_gguf(gguf: GGUFFile) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer and a ``tokenizer_config.json``-like dict (special tokens as text,
    ``add_bos_token``, ``chat_template``)."""
    from tokenizers import AddedToken

    meta, file = gguf.metadata, gguf.path.name
    tokens: list[str] = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise UnsupportedModelError(f"{file}: GGUF has no tokenizer (tokenizer.ggml.tokens)")
    kind = meta.get("tokenizer.ggml.model")
    if kind == "gpt2":
        tok = _byte_level(meta, tokens, file)
    elif kind == "llama":
        tok = _sentencepiece(meta, tokens)
    else:
        raise UnsupportedModelError(
            f"{file}: GGUF tokenizer model {kind!r} is not one famous rebuilds "
            "(supported: gpt2 (byte-level BPE), llama (SentencePiece BPE))"
        )
    types = list(meta.get("tokenizer.ggml.token_type") or [])
    for kind_code, add in ((CONTROL, tok.add_special_tokens), (USER_DEFINED, tok.add_tokens)):
        add(
            [
                AddedToken(tokens[i], special=kind_code == CONTROL, normalized=False)
                for i, t in enumerate(types)
                if t == kind_code
            ]
        )

    def text(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    conf = {
        "bos_token": text("bos"),
        "eos_token": text("eos"),
        "pad_token": text("padding"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", kind == "llama")),
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    return tok, conf
