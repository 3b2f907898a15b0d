"""Tiny random-weight Hugging Face models the engine tests serve (nothing is downloaded).

A byte-level BPE tokenizer is trained here with ``tokenizers`` on a few sentences, given a
ChatML template, and saved next to a two-layer Llama built by ``transformers`` with a fixed
seed, so every runtime loads the very same checkpoint.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "silicon is the second most abundant element in the crust of the earth",
    "tell me a story about a machine that learned to listen",
    "engines run in their own process and speak openai http",
    "a model package maps to one model and lists several engines",
    "famous picks the engine and variant that run best on this machine",
    "once upon a time there was a tiny language model with random weights",
]

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_tokenizer(folder: Path) -> Path:
    """Train a byte-level BPE on ASCII text and save it as a fast HF tokenizer.

    No initial 256-byte alphabet: every token is ASCII, so any random token sequence decodes
    to valid text and streamed pieces never split a UTF-8 character.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=SPECIALS,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return folder


def write_llama(
    folder: Path,
    seed: int = 0,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    context: int = 512,
    hold_down_specials: bool = False,
) -> Path:
    """A random-weight Llama (GQA, untied head) saved as safetensors with its tokenizer.

    ``hold_down_specials`` keeps end-of-sequence from ever being generated (benchmarks want
    every stream to run to ``max_tokens``): residual dimension 0 is a constant 1 that no
    layer writes to, and the head reads it with a large negative weight for special tokens.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    write_tokenizer(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=context,
        rms_norm_eps=1e-5,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    if hold_down_specials:
        with torch.no_grad():
            model.model.embed_tokens.weight[:, 0] = 1.0
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight[0, :] = 0.0
                layer.mlp.down_proj.weight[0, :] = 0.0
            head = model.lm_head.weight
            head[:, 0] = 0.0
            special = tok.convert_tokens_to_ids(SPECIALS)
            head[special, :] = 0.0
            head[special, 0] = -100.0
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(folder, safe_serialization=True)
    return folder
