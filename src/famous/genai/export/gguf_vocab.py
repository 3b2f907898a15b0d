"""The tokenizer part of a GGUF: ``tokenizer.ggml.*`` from a Hub ``tokenizer.json``.

Three tokenizer kinds llama.cpp runs:

* ``gpt2`` — byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM): the token strings in their
  byte-level spelling, the merges, and a pre-tokenizer name (``tokenizer.ggml.pre``) that
  says which split regex llama.cpp applies. famous reads the regex from ``tokenizer.json``
  and names the llama.cpp pre-tokenizer that uses the same one.
* ``llama`` — SentencePiece-style BPE (Llama 2, TinyLlama, Mistral, Gemma): ``▁`` for
  spaces, ``<0xNN>`` byte-fallback tokens and a score per token: minus the rank of the merge
  that makes it, so llama.cpp's highest-score-first merging follows the merge order.
* ``t5`` — a Unigram model: llama.cpp's UGM tokenizer, which segments by the Unigram
  log-probabilities (the scores) like ``tokenizers`` does and maps what the vocabulary cannot
  spell to the unknown token. (Its SentencePiece-BPE tokenizer would merge greedily instead,
  and aborts on a character that is neither in the vocabulary nor a byte token.)

Special tokens (bos / eos / unk / pad, whether bos is added) and the chat template come from
``tokenizer_config.json`` (and ``chat_template.jinja`` where transformers 5 writes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famous.genai.errors import UnsupportedModelError
from famous.genai.gguf_pretokenizers import SPLIT_REGEXES

# token types (gguf.TokenType values)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Split regexes of the byte-level pre-tokenizers llama.cpp knows, by its name for them.
_KNOWN_SPLITS = {regex: name for name, regex in SPLIT_REGEXES.items()}


@dataclass
class Vocab:
    model: str  # "gpt2" | "llama" | "t5"
    pre: str | None
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    warnings: list[str] = field(default_factory=list)


def _token_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def _pre_tokenizers(tj: dict[str, Any]) -> list[dict[str, Any]]:
    pre = tj.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence":
        return list(pre.get("pretokenizers") or [])
    return [pre] if pre else []


def _gpt2_pre_name(tj: dict[str, Any]) -> tuple[str, str | None]:
    """llama.cpp's name for this byte-level pre-tokenizer (and a warning when guessed)."""
    parts = _pre_tokenizers(tj)
    kinds = [p.get("type") for p in parts]
    splits = [
        (p.get("pattern") or {}).get("Regex") or (p.get("pattern") or {}).get("String")
        for p in parts
        if p.get("type") == "Split"
    ]
    for regex in splits:
        if regex in _KNOWN_SPLITS:
            return _KNOWN_SPLITS[regex], None
    if kinds == ["Digits", "ByteLevel"]:
        return "smollm", None
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2", None  # the ByteLevel pre-tokenizer's own regex is GPT-2's
    return "default", (
        f"pre-tokenizer {kinds} {splits[:1]} is not one famous maps to llama.cpp; "
        "wrote 'default' (llama.cpp may split text differently from transformers)"
    )


def _merges(model: dict[str, Any]) -> list[str]:
    out = []
    for m in model.get("merges") or []:
        out.append(" ".join(m) if isinstance(m, list) else str(m))
    return out


def _read_chat_template(model_dir: Path, tcfg: dict[str, Any]) -> str | None:
    tmpl = tcfg.get("chat_template")
    if isinstance(tmpl, list):  # named templates: keep the default one
        named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
        tmpl = named.get("default") or next(iter(named.values()), None)
    if tmpl:
        return str(tmpl)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = model_dir / "chat_template.json"
    if js.is_file():
        return json.loads(js.read_text(encoding="utf-8")).get("chat_template")
    return None


def _added_by_post_processor(tj: dict[str, Any], token: str | None) -> bool | None:
    """Whether the post-processor puts ``token`` around a single sequence (None: it does
    not say)."""
    post = tj.get("post_processor") or {}
    procs = post.get("processors") if post.get("type") == "Sequence" else [post]
    for p in procs or []:
        if p and p.get("type") == "TemplateProcessing":
            single = p.get("single") or []
            ids = [(s.get("SpecialToken") or {}).get("id") for s in single]
            return token is not None and token in ids
    return None


def read_vocab(model_dir: str | Path, vocab_size: int, hf_config: dict[str, Any]) -> Vocab:
    """The GGUF tokenizer of ``model_dir``, padded to ``vocab_size`` (the embedding rows)."""
    model_dir = Path(model_dir)
    tj_path = model_dir / "tokenizer.json"
    if not tj_path.is_file():
        raise UnsupportedModelError(
            f"{model_dir} has no tokenizer.json; a GGUF carries its tokenizer, so export needs "
            "one (SentencePiece-only tokenizer.model files: save the tokenizer with "
            "transformers first to get tokenizer.json)"
        )
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tcfg_path = model_dir / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text(encoding="utf-8")) if tcfg_path.is_file() else {}
    model = tj.get("model") or {}
    kind = model.get("type")

    # id → text for the model's vocabulary and the added tokens
    pieces: dict[int, str] = {}
    scores_by_id: dict[int, float] = {}
    if kind == "Unigram":
        for i, (piece, score) in enumerate(model.get("vocab") or []):
            pieces[i] = piece
            scores_by_id[i] = float(score)
    elif kind in ("BPE", "WordLevel", "WordPiece"):
        for piece, i in (model.get("vocab") or {}).items():
            pieces[int(i)] = piece
    else:
        raise UnsupportedModelError(f"tokenizer model {kind!r} is not supported for GGUF export")
    if kind in ("WordLevel", "WordPiece"):
        raise UnsupportedModelError(
            f"tokenizer model {kind} (BERT-style) is not one llama.cpp's decoders use; "
            "GGUF export supports byte-level BPE, BPE with byte fallback and Unigram"
        )
    special: dict[int, bool] = {}
    for added in tj.get("added_tokens") or []:
        pieces[int(added["id"])] = added["content"]
        special[int(added["id"])] = bool(added.get("special", False))

    byte_fallback = bool(model.get("byte_fallback")) or kind == "Unigram"
    sentencepiece = byte_fallback or any(p.get("type") == "Metaspace" for p in _pre_tokenizers(tj))
    n = max(vocab_size, (max(pieces) + 1) if pieces else 0)
    warnings: list[str] = []
    if n > vocab_size:
        raise UnsupportedModelError(
            f"tokenizer has {n} tokens but the model's embedding has {vocab_size} rows"
        )
    tokens: list[str] = []
    types: list[int] = []
    unk_text = model.get("unk_token")
    if kind == "Unigram" and model.get("unk_id") is not None:
        unk_text = pieces.get(int(model["unk_id"]))
    for i in range(n):
        if i not in pieces:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        text = pieces[i]
        tokens.append(text)
        if i in special:
            types.append(CONTROL if special[i] else USER_DEFINED)
        elif text == unk_text:
            types.append(UNKNOWN)
        elif sentencepiece and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types.append(BYTE)
        else:
            types.append(NORMAL)

    ids = {t: i for i, t in enumerate(tokens)}
    bos = _token_text(tcfg.get("bos_token"))
    eos = _token_text(tcfg.get("eos_token"))
    unk = _token_text(tcfg.get("unk_token")) or unk_text
    pad = _token_text(tcfg.get("pad_token"))

    def _id(text: str | None, fallback: Any) -> int | None:
        if text is not None and text in ids:
            return ids[text]
        if isinstance(fallback, list):
            fallback = fallback[0] if fallback else None
        return int(fallback) if fallback is not None else None

    vocab = Vocab(
        model="t5" if kind == "Unigram" else "llama" if sentencepiece else "gpt2",
        pre=None,
        tokens=tokens,
        types=types,
        bos_id=_id(bos, hf_config.get("bos_token_id")),
        eos_id=_id(eos, hf_config.get("eos_token_id")),
        unk_id=_id(unk, None),
        pad_id=_id(pad, hf_config.get("pad_token_id")),
        chat_template=_read_chat_template(model_dir, tcfg),
        warnings=warnings,
    )
    if "add_bos_token" in tcfg:
        vocab.add_bos = bool(tcfg["add_bos_token"])
    else:
        vocab.add_bos = _added_by_post_processor(tj, bos)
    if "add_eos_token" in tcfg:
        vocab.add_eos = bool(tcfg["add_eos_token"])
    elif vocab.model == "t5":  # llama.cpp's UGM default is to append eos; say what HF does
        vocab.add_eos = bool(_added_by_post_processor(tj, eos))

    if sentencepiece:
        if kind == "Unigram":
            vocab.scores = [scores_by_id.get(i, 0.0) for i in range(n)]
        else:
            rank: dict[str, int] = {}
            for r, m in enumerate(_merges(model)):
                a, _, b = m.partition(" ")
                rank.setdefault(a + b, r)
            vocab.scores = [-float(rank[t]) - 1.0 if t in rank else 0.0 for t in tokens]
        meta = [p for p in _pre_tokenizers(tj) if p.get("type") == "Metaspace"]
        normalizer = json.dumps(tj.get("normalizer") or {})
        vocab.add_space_prefix = bool(
            (meta and meta[0].get("prepend_scheme", "always") != "never")
            or '"Prepend"' in normalizer
        )
    else:
        vocab.merges = _merges(model)
        vocab.pre, warning = _gpt2_pre_name(tj)
        if warning:
            warnings.append(warning)
    return vocab


def write_vocab(writer: Any, vocab: Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for value, add in (
        (vocab.bos_id, writer.add_bos_token_id),
        (vocab.eos_id, writer.add_eos_token_id),
        (vocab.unk_id, writer.add_unk_token_id),
        (vocab.pad_id, writer.add_pad_token_id),
    ):
        if value is not None:
            add(value)
    if vocab.add_bos is not None:
        writer.add_add_bos_token(vocab.add_bos)
    if vocab.add_eos is not None:
        writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
