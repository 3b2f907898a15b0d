"""Rerank answers in the Cohere / Jina shape, whatever the engine's own looked like.

The engine scores every document (the gateway forwards neither ``top_n`` nor
``return_documents``: llama-server crashes on a negative ``top_n`` and ignores
``return_documents``); the gateway checks that each document got exactly one finite score,
then sorts, cuts and decorates the list itself, so every engine answers alike.
"""

from __future__ import annotations

from typing import Any

from famous.serve.fields import finite_number


def _scores(answer: dict[str, Any], count: int) -> dict[int, float]:
    """index -> score from ``{results: [{index, relevance_score}]}``; ValueError unless
    each of the ``count`` documents has exactly one."""
    results = answer.get("results")
    if not isinstance(results, list):
        raise ValueError("it has no results list")
    scores: dict[int, float] = {}
    for item in results:
        if not isinstance(item, dict):
            raise ValueError("a result is not an object")
        index = item.get("index")
        score = item.get("relevance_score")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise ValueError(f"a result has index {index!r}, not one of 0..{count - 1}")
        if index in scores or not finite_number(score):
            raise ValueError(f"document {index} has no single finite score")
        scores[index] = float(score)
    if len(scores) != count:
        raise ValueError(f"it scored {len(scores)} of the {count} documents")
    return scores


def _usage(answer: dict[str, Any]) -> dict[str, int] | None:
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = {k: v for k, v in usage.items() if k in ("prompt_tokens", "total_tokens")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        return None
    return counts or None


def answer(
    model: str,
    engine_answer: dict[str, Any],
    documents: list[str],
    top_n: int | None = None,
    return_documents: bool = False,
) -> dict[str, Any]:
    """The client's answer: results by score, highest first (ties by index), at most
    ``top_n`` of them (more than there are documents means all), each with its document
    when ``return_documents`` asks. ValueError when the engine's answer does not say."""
    scores = _scores(engine_answer, len(documents))
    order = sorted(scores, key=lambda i: (-scores[i], i))[:top_n]
    results: list[dict[str, Any]] = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if return_documents:
            result["document"] = {"text": documents[i]}
        results.append(result)
    out: dict[str, Any] = {"object": "list", "model": model, "results": results}
    usage = _usage(engine_answer)
    if usage is not None:
        out["usage"] = usage
    return out
