"""``GatewayClient``: every HTTP call the CLI (and later a web UI) makes to a running gateway.

The JSON calls use the standard library only, so ``famous status`` and friends never import
an HTTP stack; the streaming chat imports httpx when it is used. Admin routes get the API
key, else ``FAMOUS_API_KEY``, else the install's admin token (``FAMOUS_HOME/admin-token``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from famous.errors import FamousError, NotFound
from famous.store.gateway_state import GatewayInfo, admin_token


class GatewayError(FamousError):
    """The gateway refused a call; the message is the error it answered with."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayNotFound(GatewayError, NotFound):
    """The gateway answered 404: it knows no such model."""


class StreamInterrupted(GatewayError):
    """The gateway ended a stream with an error event after it had begun."""


def error_message(body: Any) -> str:
    """The message of an OpenAI-style ``{"error": {"message": …}}`` body, else the body."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


@dataclass(frozen=True)
class GatewayClient:
    """A gateway at ``url`` (``http://host:port``, no ``/v1``)."""

    url: str
    api_key: str | None = None

    @classmethod
    def of(cls, info: GatewayInfo, api_key: str | None = None) -> GatewayClient:
        return cls(info.url, api_key)

    def _admin_key(self) -> str | None:
        return self.api_key or os.environ.get("FAMOUS_API_KEY") or admin_token()

    def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> tuple[int, Any]:
        """One JSON call: (status, decoded body); an error status is returned, not raised."""
        import urllib.error  # here, not at import: `famous --help` and friends never need HTTP
        import urllib.request

        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        key = self._admin_key()
        if key:
            req.add_header("authorization", f"Bearer {key}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, {"error": {"message": body.decode(errors="replace")}}

    def call(
        self, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> Any:
        """One JSON call that must succeed: its body, or a GatewayError with its message."""
        status, body = self.request(method, path, payload, timeout)
        if status != 200:
            raise GatewayError(error_message(body), status)
        return body

    def healthy(self, timeout: float = 2.0) -> bool:
        """``/health`` answers 200 (False when nothing answers at all)."""
        try:
            status, _ = self.request("GET", "/health", timeout=timeout)
        except (OSError, ValueError):
            return False
        return status == 200

    def ps(self) -> Any:
        """The gateway's own view of its deployments (``/famous/api/ps``)."""
        return self.call("GET", "/famous/api/ps")

    def register_model(self, name: str, path: str) -> Any:
        """Serve a local model file or folder under ``name``."""
        return self.call("POST", "/famous/api/models", {"name": name, "path": path})

    def load(self, model: str, timeout: float = 600.0) -> dict[str, Any]:
        """Load ``model`` and wait until its engine is healthy; what the gateway says of it.

        A model the gateway does not know raises GatewayNotFound."""
        status, body = self.request("POST", "/famous/api/load", {"model": model}, timeout=timeout)
        if status == 404:
            raise GatewayNotFound(error_message(body), status)
        if status != 200:
            raise GatewayError(error_message(body), status)
        return body

    def stop(self, model: str | None = None, timeout: float = 60.0) -> list[str]:
        """Stop ``model``'s engine (every engine when ``model`` is None); the names stopped."""
        payload = {"all": True} if model is None else {"model": model}
        return list(
            self.call("POST", "/famous/api/stop", payload, timeout=timeout).get("stopped", [])
        )

    def stream_chat(
        self, model: str, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[str]:
        """Stream one chat answer: its text, piece by piece, as the engine produces it.

        A refused request raises GatewayError; an error event mid-stream StreamInterrupted.
        """
        import httpx

        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        payload: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if max_tokens:
            payload["max_tokens"] = max_tokens
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, read=None), trust_env=False) as client,
            client.stream(
                "POST", self.url + "/v1/chat/completions", json=payload, headers=headers
            ) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                try:
                    message = error_message(resp.json())
                except ValueError:
                    message = resp.text
                raise GatewayError(message, resp.status_code)
            yield from _pieces(resp.iter_lines())


def _pieces(lines: Iterator[str]) -> Iterator[str]:
    """The content deltas of an OpenAI chat stream's ``data:`` lines, up to ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise StreamInterrupted(error_message(event))
        for choice in event.get("choices", []):
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                yield piece
