"""Fixtures of the serving tests; the helpers live in ``serving_harness`` (import it by name)."""

from __future__ import annotations

from serving_harness import gateway, tiny_models  # noqa: F401  (fixtures)
