"""famous's chat-template rendering against transformers' ``apply_chat_template`` on the
same template: loop controls, ``{% generation %}``, ``strftime_now`` (Llama 3.x), ``tojson``
options, and ``chat_template.jinja`` winning over ``tokenizer_config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from genai_helpers import train_tokenizer

from famous.genai.tokenizer import TemplateError, Tokenizer

TEMPLATE = (
    "{{ bos_token }}Today is {{ strftime_now('%Y-%m-%d') }}.\n"
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{% continue %}{% endif %}"
    "{% if m['content'] == 'STOP' %}{% break %}{% endif %}"
    "<|{{ m['role'] }}|>"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}"
    "{% else %}{{ m['content'] }}{% endif %}<|end|>\n"
    "{% endfor %}"
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
    "count={{ ns.n }} meta={{ {'b': '<é>', 'a': 1} | tojson(sort_keys=True) }}\n"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <there> & welcome"},
    {"role": "tool", "content": "skipped by continue"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "STOP"},
    {"role": "user", "content": "never rendered (after break)"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chat-template")
    train_tokenizer(out)
    # transformers 5 keeps the template in its own file, which wins over the config's
    (out / "chat_template.jinja").write_text(TEMPLATE, encoding="utf-8")
    return out


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_rendering_matches_transformers(model_dir: Path, add_generation_prompt: bool) -> None:
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    ours = Tokenizer(model_dir).apply_chat_template(
        MESSAGES, add_generation_prompt=add_generation_prompt
    )
    assert ours == theirs
    assert "never rendered" not in ours and "skipped" not in ours and "Today is 20" in ours


def test_legacy_chat_template_json_is_read(tmp_path: Path) -> None:
    train_tokenizer(tmp_path)
    conf = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del conf["chat_template"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(conf))
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    assert Tokenizer(tmp_path).chat_template == TEMPLATE


def test_raise_exception_and_syntax_errors_are_template_errors(tmp_path: Path) -> None:
    train_tokenizer(tmp_path)
    tok = Tokenizer(tmp_path)  # the helper's template refuses unknown roles
    with pytest.raises(TemplateError, match="unknown role robot"):
        tok.apply_chat_template([{"role": "robot", "content": "x"}])
    tok.chat_template = "{% for m in messages %}{{ m }"
    with pytest.raises(TemplateError, match="does not parse"):
        tok.apply_chat_template(MESSAGES)
