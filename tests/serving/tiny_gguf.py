"""Tiny GGUF models the serving tests (and the gateway benchmark) write themselves.

- ``write_llama``: a random-weight llama with a byte-level BPE tokenizer trained here with
  ``tokenizers`` and a ChatML template in its metadata. End-of-generation tokens are held
  down by one constant residual dimension, so generation always runs to ``max_tokens``
  and tests can reason about lengths and stop sequences.
- ``write_bert``: a random-weight BERT encoder with a WordPiece vocabulary and mean pooling,
  which llama.cpp serves as an embedding model.
- ``write_bert_reranker``: the same encoder with rank pooling and a classification head
  (``cls`` then ``cls.output``, one label), which llama-server serves as a reranker.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TEXT = (
    "the quick brown fox jumps over the lazy dog while famous serves small models on "
    "local machines with llama cpp engines and an openai compatible gateway that streams "
    "tokens to every client hello world how are you today tell me a story about silicon "
    "cores memory caches threads batches prompts answers questions numbers one two three "
    "four five six seven eight nine ten red green blue yellow purple orange black white"
)
_WORDS = _TEXT.split(" ")


def _corpus(lines: int = 400, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(lines):
        n = int(rng.integers(4, 16))
        out.append(" ".join(rng.choice(_WORDS, size=n)) + ("." if rng.random() < 0.5 else ","))
    return out


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: printable character -> the byte it stands for."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def _plain_ascii(token: str, decoder: dict[str, int]) -> bool:
    """True when a byte-level token decodes to printable ASCII (space, letters, punctuation)."""
    try:
        data = bytes(decoder[ch] for ch in token)
    except KeyError:
        return False
    return bool(data) and all(32 <= b < 127 for b in data)


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    """Write out what ``writer`` holds: header, metadata, tensors."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def train_bpe(vocab_size: int = 400) -> tuple[list[str], list[str], dict[str, int]]:
    """A GPT-2-style byte-level BPE: (tokens by id, merges 'a b', special token ids)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    vocab = tok.get_vocab()
    tokens = [""] * len(vocab)
    for text, idx in vocab.items():
        tokens[idx] = text
    raw_merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in raw_merges]
    return tokens, merges, {s: vocab[s] for s in specials}


def write_llama(
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context: int = 4096,
    vocab_size: int = 400,
    seed: int = 0,
    chat_template: str | None = CHATML,
) -> Path:
    """Write a random llama-architecture GGUF (f32) with a trained BPE tokenizer."""
    tokens, merges, special = train_bpe(vocab_size)
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("famous-tiny-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special["<|endoftext|>"])
    writer.add_eos_token_id(special["<|im_end|>"])
    writer.add_add_bos_token(False)
    if chat_template:
        writer.add_chat_template(chat_template)

    # Dimension 0 of the residual stream is a constant 1 (no layer writes to it), so after
    # the final norm it is positive; special tokens read it with a large negative weight and
    # are never sampled, ordinary tokens ignore it.
    embd = rand(n_vocab, n_embd, scale=1.0)
    embd[:, 0] = 1.0
    writer.add_tensor("token_embd.weight", embd)
    for i in range(n_layer):
        attn_out = rand(n_embd, n_head * head_dim)
        attn_out[0, :] = 0.0
        ffn_down = rand(n_embd, n_ff)
        ffn_down[0, :] = 0.0
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(n_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", attn_out)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", ffn_down)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = rand(n_vocab, n_embd, scale=0.5)
    output[:, 0] = 0.0
    # Special tokens and tokens that are not printable ASCII (raw control bytes, halves of
    # UTF-8 sequences) are never generated: answers stay readable and stream byte-stable.
    decoder = _byte_decoder()
    banned = [i for i, t in enumerate(tokens) if t in special or not _plain_ascii(t, decoder)]
    for idx in banned:
        output[idx, :] = 0.0
        output[idx, 0] = -100.0
    writer.add_tensor("output.weight", output)

    return _finish(writer, path)


def train_wordpiece(vocab_size: int = 300) -> tuple[list[str], dict[str, int]]:
    """A BERT WordPiece vocabulary, written the way llama.cpp's WPM tokenizer reads it."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    vocab = tok.get_vocab()
    pieces = [""] * len(vocab)
    for text, idx in vocab.items():
        pieces[idx] = text

    def phantom(piece: str) -> str:  # llama.cpp: word starts carry '▁', '##' pieces do not
        if piece in specials:
            return piece
        return piece[2:] if piece.startswith("##") else "\u2581" + piece

    tokens = [phantom(p) for p in pieces]
    # Two pieces may collide after the rewrite; keep them distinct so the vocab stays valid.
    seen: set[str] = set()
    for i, t in enumerate(tokens):
        while t in seen:
            t += "\u200b"
        tokens[i] = t
        seen.add(t)
    return tokens, {s: vocab[s] for s in specials}


def write_bert(
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    context: int = 512,
    seed: int = 1,
    reranker: bool = False,
) -> Path:
    """Write a random BERT-architecture embedding GGUF with mean pooling (or, as a
    ``reranker``, rank pooling and a one-label classification head)."""
    tokens, special = train_wordpiece()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("famous-tiny-bert")
    writer.add_context_length(context)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK if reranker else gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_type_count(2)
    writer.add_bos_token_id(special["[CLS]"])
    writer.add_sep_token_id(special["[SEP]"])
    writer.add_unk_token_id(special["[UNK]"])
    writer.add_pad_token_id(special["[PAD]"])
    writer.add_mask_token_id(special["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    ones = np.ones(n_embd, dtype=np.float32)
    zeros = np.zeros(n_embd, dtype=np.float32)
    writer.add_tensor("token_embd.weight", rand(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("token_types.weight", rand(2, n_embd))
    writer.add_tensor("position_embd.weight", rand(context, n_embd))
    writer.add_tensor("token_embd_norm.weight", ones)
    writer.add_tensor("token_embd_norm.bias", zeros)
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v"):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.{name}.bias", rand(n_embd, scale=0.02))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.bias", rand(n_embd, scale=0.02))
        writer.add_tensor(f"blk.{i}.attn_output_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_output_norm.bias", zeros)
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.bias", rand(n_ff, scale=0.02))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(n_embd, n_ff))
        writer.add_tensor(f"blk.{i}.ffn_down.bias", rand(n_embd, scale=0.02))
        writer.add_tensor(f"blk.{i}.layer_output_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.layer_output_norm.bias", zeros)
    if reranker:
        # llama.cpp's rank pooling: the [CLS] row, tanh(cls · x + b), then cls.output to
        # one relevance score per (query, document) pair
        writer.add_classifier_output_labels(["relevant"])
        writer.add_tensor("cls.weight", rand(n_embd, n_embd))
        writer.add_tensor("cls.bias", rand(n_embd, scale=0.02))
        writer.add_tensor("cls.output.weight", rand(1, n_embd, scale=1.0))
        writer.add_tensor("cls.output.bias", np.zeros(1, dtype=np.float32))

    return _finish(writer, path)


def write_bert_reranker(path: Path, *, seed: int = 2) -> Path:
    """Write a random BERT cross-encoder GGUF (rank pooling), as bge-reranker converts to."""
    return write_bert(path, seed=seed, reranker=True)


def write_mmproj(
    path: Path,
    *,
    text_embd: int = 64,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 48,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 3,
) -> Path:
    """Write a random-weight LLaVA-style vision projector (``clip.projector_type: mlp``):
    a ViT of ``n_layer`` blocks over ``patch_size`` patches of an ``image_size`` square,
    then ``mm.0`` → GELU → ``mm.2`` into the text model's ``text_embd`` (llama.cpp's mtmd
    refuses a projector whose output size differs from the model's embedding size).

    The names and keys are the ones llama.cpp's ``clip.cpp`` loads; the ViT's last block is
    loaded but unused (LLaVA reads the second to last layer)."""
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n_patches = (image_size // patch_size) ** 2
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("famous-tiny-mmproj")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch_size)
    writer.add_uint32("clip.vision.embedding_length", n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", n_ff)
    writer.add_uint32("clip.vision.block_count", n_layer)
    writer.add_uint32("clip.vision.projection_dim", text_embd)
    writer.add_uint32("clip.vision.attention.head_count", n_head)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    writer.add_tensor("v.patch_embd.weight", rand(n_embd, 3, patch_size, patch_size))
    writer.add_tensor("v.patch_embd.bias", rand(n_embd))
    writer.add_tensor("v.position_embd.weight", rand(n_patches, n_embd))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", rand(n_embd, n_embd))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", rand(n_embd))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{norm}.weight", np.ones(n_embd, dtype=np.float32))
            writer.add_tensor(f"v.blk.{i}.{norm}.bias", np.zeros(n_embd, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", rand(n_ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", rand(n_embd, n_ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", rand(n_embd))
    writer.add_tensor("mm.0.weight", rand(text_embd, n_embd))
    writer.add_tensor("mm.0.bias", rand(text_embd))
    writer.add_tensor("mm.2.weight", rand(text_embd, text_embd))
    writer.add_tensor("mm.2.bias", rand(text_embd))

    return _finish(writer, path)
