"""The Hub chat template: where a model directory keeps it, and the one Jinja environment
famous renders it with, set up as transformers' ``apply_chat_template`` sets up its own
(sandboxed, ``trim_blocks`` / ``lstrip_blocks``, loop controls, ``{% generation %}``,
``raise_exception``, ``strftime_now``, a ``tojson`` that does not HTML-escape)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from famous.genai.errors import GenAIError


class TemplateError(GenAIError, ValueError):
    """The chat template refused the messages (its ``raise_exception``) or does not parse."""


def read_chat_template(model_dir: str | Path, tokenizer_config: dict[str, Any]) -> str | None:
    """``chat_template.jinja`` (transformers 5 writes it, and it wins over the config),
    else ``tokenizer_config.json``'s ``chat_template`` (its "default" when named), else a
    legacy ``chat_template.json``."""
    d = Path(model_dir)
    if (d / "chat_template.jinja").is_file():
        return (d / "chat_template.jinja").read_text(encoding="utf-8")
    tmpl = tokenizer_config.get("chat_template")
    if isinstance(tmpl, list):  # named templates: keep the default one
        named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
        tmpl = named.get("default") or next(iter(named.values()), None)
    if tmpl:
        return str(tmpl)
    if (d / "chat_template.json").is_file():
        found = json.loads((d / "chat_template.json").read_text(encoding="utf-8"))
        return found.get("chat_template") if isinstance(found, dict) else None
    return None


def render_chat_template(template: str, **variables: Any) -> str:
    """Render ``template`` with ``variables`` (messages, add_generation_prompt, the
    special tokens …); a template error becomes ``TemplateError``."""
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    try:
        return _compiled(template).render(**variables)
    except TemplateError:
        raise
    except JinjaTemplateError as e:
        raise TemplateError(f"chat template failed: {e}") from e


@lru_cache(maxsize=16)
def _compiled(template: str) -> Any:
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    try:
        return _environment().from_string(template)
    except JinjaTemplateError as e:
        raise TemplateError(f"chat template does not parse: {e}") from e


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_generation_block_class(), jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _generation_block_class() -> type:
    import jinja2.ext
    import jinja2.nodes

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}…{% endgeneration %}`` marks the assistant's part of a
        training sample; rendering a prompt keeps its body as it is."""

        tags = frozenset({"generation"})

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(
                lineno
            )

        def _body(self, caller: Any) -> str:
            return caller()

    return GenerationBlock
