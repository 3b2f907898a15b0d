"""Fixtures of the serving tests; the helpers live in ``serving_harness`` (import it by name)."""

from __future__ import annotations

from serving_harness import LLAMA_CPP_MISSING

if LLAMA_CPP_MISSING:  # every serving test needs a real llama.cpp
    collect_ignore_glob = ["test_*.py"]
else:
    from serving_harness import gateway, tiny_models  # noqa: F401  (fixtures)
