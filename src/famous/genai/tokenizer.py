"""Tokenizer from ``tokenizer.json`` (the ``tokenizers`` library) plus the Hub chat template.

The chat template is rendered with Jinja the way transformers does: a sandboxed
environment, ``trim_blocks`` / ``lstrip_blocks``, ``raise_exception``, ``bos_token`` /
``eos_token`` and ``add_generation_prompt`` in scope.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from famous.genai.errors import CheckpointError, GenAIError
from famous.genai.gguf_source.reader import GGUFFile, is_gguf
from famous.genai.gguf_source.vocab import tokenizer_from_gguf


class TemplateError(GenAIError, ValueError):
    """The chat template refused the messages (its ``raise_exception``)."""


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", ...} in older tokenizer_config files
        return value.get("content")
    return value


class Tokenizer:
    """``model_dir``: a Hub folder (tokenizer.json) or a GGUF file."""

    def __init__(self, model_dir: str | Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        d = Path(model_dir)
        path = d / "tokenizer.json"
        conf: dict[str, Any] = {}
        if is_gguf(d):  # a GGUF carries its tokenizer and chat template in its metadata
            self._tok, conf = tokenizer_from_gguf(GGUFFile(d))
        elif not path.is_file():
            raise CheckpointError(
                f"{path} not found: famous needs a tokenizer.json (fast tokenizer)"
            )
        else:
            self._tok = HFTokenizer.from_file(str(path))
        if (d / "tokenizer_config.json").is_file():
            conf = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.bos_token = _token_text(conf.get("bos_token"))
        self.eos_token = _token_text(conf.get("eos_token"))
        self.pad_token = _token_text(conf.get("pad_token"))
        self.add_bos_token = bool(conf.get("add_bos_token", False))
        template = conf.get("chat_template")
        if template is None and (d / "chat_template.jinja").is_file():
            template = (d / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(template, list):  # named templates: take "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.chat_template: str | None = template
        self.bos_token_id = self.token_to_id(self.bos_token)
        self.eos_token_id = self.token_to_id(self.eos_token)
        self.pad_token_id = self.token_to_id(self.pad_token)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        bos = self.bos_token_id
        if add_special_tokens and self.add_bos_token and bos is not None and ids[:1] != [bos]:
            ids = [bos, *ids]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        if not self.chat_template:
            raise TemplateError("this model has no chat template; send a plain prompt instead")
        from jinja2.exceptions import TemplateError as JinjaTemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.filters["tojson"] = lambda v, indent=None: json.dumps(
            v, ensure_ascii=False, indent=indent
        )
        try:
            return env.from_string(self.chat_template).render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                **extra,
            )
        except JinjaTemplateError as e:
            raise TemplateError(f"chat template failed: {e}") from e
