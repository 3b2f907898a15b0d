"""Which request fields reach an engine: OpenAI's own, plus the sampling extensions local
engines share, each checked; everything else is dropped before forwarding.

Engines crash or answer 500 with a traceback on fields they half-understand (llama.cpp's
raw ``grammar`` with an unbalanced rule segfaults ``llama_cpp.server``), so the gateway
forwards only what it knows. ``response_format`` (JSON schemas) is the supported way to
constrain output.
"""

from __future__ import annotations

import math
from typing import Any

from famous.serve import images
from famous.serve.errors import invalid

_COMMON = frozenset({"model", "user", "stream", "stream_options", "seed", "stop", "n"})
_SAMPLING = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        # extensions llama.cpp, vLLM, MLX and famous-native read
        "top_k",
        "min_p",
        "repeat_penalty",
        "repetition_penalty",
        "typical_p",
    }
)

FORWARDED: dict[str, frozenset[str]] = {
    "chat": _COMMON
    | _SAMPLING
    | {
        "messages",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "functions",
        "function_call",
    },
    "completions": _COMMON | _SAMPLING | {"prompt", "suffix", "echo", "best_of"},
    "embeddings": frozenset({"model", "input", "encoding_format", "dimensions", "user"}),
    # top_n and return_documents are the gateway's to apply (famous.serve.rerank)
    "rerank": frozenset({"model", "query", "documents"}),
}

# field -> (lowest, highest, integer?): OpenAI's own (checked before routing) ...
OPENAI_RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 2.0, False),
    "top_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "frequency_penalty": (-2.0, 2.0, False),
}
# ... and the extensions engines share (checked before forwarding)
EXTENSION_RANGES: dict[str, tuple[float, float, bool]] = {
    "top_k": (0, 1_000_000, True),
    "min_p": (0.0, 1.0, False),
    "typical_p": (0.0, 1.0, False),
    "repeat_penalty": (0.0, 10.0, False),
    "repetition_penalty": (0.0, 10.0, False),
    "top_logprobs": (0, 20, True),
}


def finite_number(value: Any) -> bool:
    """A JSON number that is finite as a float (not a bool, not an integer too large)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_ranges(payload: dict[str, Any], ranges: dict[str, tuple[float, float, bool]]) -> None:
    """Each field of ``ranges`` the payload sets (not null) is a number within its bounds."""
    for key, (low, high, integer) in ranges.items():
        value = payload.get(key)
        if value is None:
            continue
        kind = "an integer" if integer else "a number"
        if (
            not finite_number(value)
            or (integer and not isinstance(value, int))
            or not low <= value <= high
        ):
            raise invalid(f"{key} must be {kind} between {low:g} and {high:g}, got {value!r}", key)


def _check_extensions(payload: dict[str, Any]) -> None:
    check_ranges(payload, EXTENSION_RANGES)
    bias = payload.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict) or len(bias) > 1024:
            raise invalid("logit_bias must map at most 1024 token ids to numbers", "logit_bias")
        for token, weight in bias.items():
            if not (isinstance(token, str) and token.isdigit() and len(token) < 10):
                raise invalid(f"logit_bias keys are token ids, got {token!r}", "logit_bias")
            if not finite_number(weight) or not -100 <= weight <= 100:
                raise invalid(f"logit_bias[{token}] must be between -100 and 100", "logit_bias")


def _check_messages(messages: list[Any]) -> list[Any]:
    """Messages as every engine reads them: text-only content parts become one string;
    image parts are checked (``famous.serve.images``)."""
    out = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid(f"messages[{i}] has role tool but no tool_call_id", "messages")
        if isinstance(content, list):
            parts = images.check_parts(i, content)
            if all(p["type"] == "text" for p in parts):
                message = {**message, "content": "".join(p["text"] for p in parts)}
            else:
                message = {**message, "content": parts}
        elif content is not None and not isinstance(content, str):
            raise invalid(
                f"messages[{i}].content must be a string, a list of parts or null", "messages"
            )
        out.append(message)
    return out


def forwarded(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The body the engine receives: checked fields only (``validate`` ran already)."""
    _check_extensions(payload)
    if kind == "completions" and payload.get("prompt") in ("", []):
        raise invalid("prompt is empty; send some text or tokens", "prompt")
    body = {k: v for k, v in payload.items() if k in FORWARDED[kind]}
    if kind == "rerank":  # Cohere's {text} documents are plain texts to llama.cpp
        body["documents"] = [d["text"] if isinstance(d, dict) else d for d in body["documents"]]
    if kind == "chat":
        body["messages"] = _check_messages(body["messages"])
        if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
            # OpenAI's newer name; every engine reads max_tokens, not all read this one
            body["max_tokens"] = body["max_completion_tokens"]
    return body
