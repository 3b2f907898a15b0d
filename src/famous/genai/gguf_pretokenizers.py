"""The split regexes of the byte-level pre-tokenizers llama.cpp knows, by the name it gives
them in ``tokenizer.ggml.pre``: the GGUF writer (``export.gguf_vocab``) names a
``tokenizer.json``'s split by them, the GGUF reader (``gguf_source.vocab``) rebuilds it."""

from __future__ import annotations

# Meta's Llama 3 split (numbers in runs of up to three digits)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Alibaba's Qwen2 split (one digit at a time)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLIT_REGEXES = {"llama-bpe": LLAMA3_SPLIT, "qwen2": QWEN2_SPLIT}
