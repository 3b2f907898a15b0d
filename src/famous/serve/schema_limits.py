"""Bounds on the JSON schemas a request hands to an engine's grammar compiler.

A ``response_format`` schema (and a tool's ``parameters``, which forced and auto tool calls
turn into one) becomes a llama.cpp grammar that every sampled token is checked against.
Measured on llama-server here: a 5,000-value ``enum`` held one request for more than a
minute, a 1,000-value one for 5 s, and a ``$ref`` to itself fails to compile, and an
empty ``enum`` crashes llama-cpp-python's server (SIGSEGV; found by this module's fuzz
test); a client could tie an engine up or bring it down that way. These bounds leave
every realistic schema through and refuse the rest with a 400 naming the field and the
bound.
"""

from __future__ import annotations

import json
from typing import Any

from famous.serve.errors import invalid

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_ALTERNATIVES = 512  # enum values + anyOf/oneOf branches, over the whole schema
MAX_TOOLS = 128  # OpenAI's own bound on tools
MAX_REPEAT = 4096  # minItems / minLength / minProperties: repeated grammar rules
_REPEATS = ("minItems", "minLength", "minProperties")
_BRANCHES = ("anyOf", "oneOf", "allOf")


def _walk(node: Any, field: str, depth: int, counted: list[int]) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise invalid(f"{field} nests deeper than {MAX_SCHEMA_DEPTH} levels", field)
    if isinstance(node, list):
        for item in node:
            _walk(item, field, depth + 1, counted)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
        raise invalid(f"{field}: $ref must point inside the schema (#/…), got {ref!r}", field)
    for key in _REPEATS:
        value = node.get(key)
        if isinstance(value, int | float) and value > MAX_REPEAT:
            raise invalid(f"{field}: {key} may be at most {MAX_REPEAT}, got {value}", field)
    for key in ("enum", *_BRANCHES):
        if key in node and (not isinstance(node[key], list) or not node[key]):
            # nothing satisfies an empty enum; llama-cpp-python's compiler crashes on one
            raise invalid(f"{field}: {key} must be a non-empty list", field)
    kind = node.get("type")
    if isinstance(kind, list) and not kind:
        raise invalid(f"{field}: type must be a name or a non-empty list of names", field)
    enum = node.get("enum")
    counted[0] += len(enum) if isinstance(enum, list) else 0
    counted[0] += sum(len(node[k]) for k in _BRANCHES if isinstance(node.get(k), list))
    if counted[0] > MAX_ALTERNATIVES:
        raise invalid(
            f"{field} lists more than {MAX_ALTERNATIVES} alternatives (enum values and "
            "anyOf/oneOf/allOf branches together)",
            field,
        )
    for value in node.values():
        _walk(value, field, depth + 1, counted)


def check_schema(schema: Any, field: str) -> None:
    """Refuse a schema an engine's grammar compiler should not be handed."""
    if schema is None:
        return
    if not isinstance(schema, dict | bool):
        raise invalid(f"{field} must be a JSON schema (an object)", field)
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise invalid(f"{field} is larger than {MAX_SCHEMA_BYTES // 1024} KiB", field)
    _walk(schema, field, 0, [0])


def check_request_schemas(payload: dict[str, Any]) -> None:
    """The schemas of a chat or completion request: response_format's and the tools'."""
    wanted = payload.get("response_format")
    if isinstance(wanted, dict):
        spec = wanted.get("json_schema")
        if isinstance(spec, dict):
            check_schema(spec.get("schema"), "response_format.json_schema.schema")
        check_schema(wanted.get("schema"), "response_format.schema")
    tools = payload.get("tools")
    if isinstance(tools, list):
        if len(tools) > MAX_TOOLS:
            raise invalid(f"tools may list at most {MAX_TOOLS} functions", "tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict):
                check_schema(function.get("parameters"), f"tools[{i}].function.parameters")
