"""What a hostile web page could send through the user's browser, refused before any route.

A page on any site can make the browser send requests to ``127.0.0.1``: "simple" POSTs
(``text/plain``, form encodings) with no preflight, and, after DNS rebinding, any request
under its own host name. The guard answers them with an OpenAI-shaped error:

- ``Host`` must name this gateway: a loopback name, the bound address, or a name the user
  allowed (``FAMOUS_ALLOWED_HOSTS``, comma-separated). A gateway bound to a wildcard
  address (which needs an API key) takes any Host.
- ``Origin``, when a browser sends one, must be this gateway itself (the same host and port
  as ``Host``) or an allowed host.
- A request with a body must say ``application/json`` (or ``…+json``): every famous route
  takes JSON, and no cross-site page can send that type without a preflight the gateway
  never grants (it sends no CORS headers). One exception: Ollama's routes (``/api/…``) take
  a body with no ``Content-Type`` at all and no ``Origin``, as Ollama does: its clients
  (LiteLLM's ``ollama`` and ``ollama_chat`` providers) send none, and a browser sends an
  ``Origin`` with every cross-site POST.

Anthropic's routes (``/v1/messages``) get the refusal in Anthropic's error shape.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from famous.serve.errors import APIError
from famous.serve.protocols import anthropic

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """``"[::1]:8324"`` -> ``"::1"``; ``"Example.COM:80"`` -> ``"example.com"``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names this gateway answers to; None (any) when bound to a wildcard."""
    if bound in WILDCARD_ADDRESSES:
        return None
    configured = [h for h in os.environ.get("FAMOUS_ALLOWED_HOSTS", "").split(",") if h.strip()]
    return frozenset({*LOOPBACK_NAMES, host_name(bound), *map(host_name, (*extra, *configured))})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _typed_enough(path: str, headers: dict[str, str]) -> bool:
    """JSON, or an untyped body sent to Ollama's API by something that is not a browser."""
    if _is_json(headers.get("content-type", "")):
        return True
    untyped = "content-type" not in headers and "origin" not in headers
    return untyped and path.startswith("/api/")


def check(
    method: str, headers: dict[str, str], hosts: frozenset[str] | None, path: str = ""
) -> APIError | None:
    """The reason to refuse this request to ``path``, or None."""
    host = headers.get("host")
    if hosts is not None and host is not None and host_name(host) not in hosts:
        return APIError(
            403,
            f"this gateway does not answer to Host {host!r}; allow a name with "
            "FAMOUS_ALLOWED_HOSTS=NAME[,NAME…]",
            code="host_not_allowed",
        )
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        same_gateway = host is not None and parts.netloc.lower() == host.strip().lower()
        named = parts.hostname is not None and (hosts is None or parts.hostname in hosts)
        if not (parts.scheme in ("http", "https") and (same_gateway or named)):
            return APIError(
                403,
                f"cross-origin requests from {origin!r} are not accepted",
                code="origin_not_allowed",
            )
    has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
    if method in _BODY_METHODS and has_body and not _typed_enough(path, headers):
        return APIError(
            415,
            f"send the body as application/json, not {headers.get('content-type') or 'untyped'}",
            code="unsupported_media_type",
        )
    return None


class RequestGuard:
    """ASGI middleware running ``check`` on every HTTP request."""

    def __init__(self, app: ASGIApp, bound_host: str, extra_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = allowed_hosts(bound_host, extra_hosts)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = str(scope.get("path", ""))
        problem = check(scope["method"], headers, self.hosts, path)
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = anthropic.shaped(path, problem).body
        await send(
            {
                "type": "http.response.start",
                "status": problem.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
