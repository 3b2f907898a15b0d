"""The chat prompt famous builds for the real model is transformers' prompt, character for
character and token for token, and so is the one llama.cpp renders from the GGUF's template.

famous-native renders ``chat_template`` from the tokenizer files itself (``famous.genai.
tokenizer.Tokenizer``, which ``Pipeline.chat_prompt`` and the native server use); the
reference is ``tokenizer.apply_chat_template(..., add_generation_prompt=True,
tokenize=False)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from realweights_helpers import CONVERSATIONS

from famous.genai.tokenizer import Tokenizer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def famous_tokenizer(smollm2_hf_dir: Path) -> Tokenizer:
    return Tokenizer(smollm2_hf_dir)


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=lambda c: f"{len(c)}-messages")
@pytest.mark.parametrize("generation_prompt", [True, False], ids=["gen", "no-gen"])
def test_famous_prompt_equals_transformers(
    famous_tokenizer: Tokenizer, hf_tokenizer, conversation: list, generation_prompt: bool
) -> None:
    ours = famous_tokenizer.apply_chat_template(
        conversation, add_generation_prompt=generation_prompt
    )
    theirs = hf_tokenizer.apply_chat_template(
        conversation, add_generation_prompt=generation_prompt, tokenize=False
    )
    assert ours == theirs
    if generation_prompt:
        assert ours.endswith("<|im_start|>assistant\n")
    # A rendered template holds its special tokens: both encode it without adding any.
    assert famous_tokenizer.encode(ours, add_special_tokens=False) == (
        hf_tokenizer(theirs, add_special_tokens=False).input_ids
    )


def test_gguf_template_renders_the_same(smollm2_gguf: Path, hf_tokenizer) -> None:
    """llama-cpp-python renders the template stored in the GGUF (``tokenizer.chat_template``)
    with its Jinja2 formatter, given the GGUF's own BOS / EOS texts (as ``llama_cpp.Llama``
    sets it up for its server): the same prompt as transformers on the converted folder."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    formatter = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=vocab._model.token_get_text(vocab.token_eos()),
        bos_token=vocab._model.token_get_text(vocab.token_bos()),
        add_generation_prompt=True,
    )
    for conversation in CONVERSATIONS:
        want = hf_tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        assert formatter(messages=conversation).prompt == want
