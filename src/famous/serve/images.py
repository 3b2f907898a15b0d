"""Image content parts of chat messages: checked here, and URLs fetched by the gateway.

OpenAI's ``{"type": "image_url", "image_url": {"url": ...}}`` parts reach llama-server as
data URIs only: famous's llama-server is built without an HTTP client, so an ``http(s)``
URL is fetched by the gateway and sent on as a data URI. The fetch is bounded so that a
request cannot turn the gateway into a crawler of its own network or a memory sink:

- http and https only, no credentials in the URL, at most ``MAX_REDIRECTS`` redirects,
  each checked like the first;
- the whole fetch of one image within ``FETCH_TIMEOUT`` seconds, at most
  ``MAX_IMAGE_BYTES``, answered with an image content type, and bytes that are a PNG,
  JPEG, WebP or GIF image;
- a gateway reachable from other machines (bound off loopback) fetches from public
  addresses only: the host's addresses are resolved and checked, and the connection goes
  to the address checked (no second lookup a DNS answer could change in between). A
  gateway bound to loopback serves this machine's users, who can reach its network
  themselves, so it fetches from any address.

Data URIs are decoded (strict base64) and sniffed the same way, so an engine never sees
bytes that are not an image, and every error names the field it is about.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
import urllib.parse
from typing import Any

import httpx

from famous.serve.errors import APIError, invalid

MAX_IMAGE_BYTES = 20 << 20
MAX_REMOTE_IMAGES = 8  # URLs one request may make the gateway fetch
FETCH_TIMEOUT = 10.0
MAX_REDIRECTS = 3
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,")
_REDIRECTS = (301, 302, 303, 307, 308)

Where = tuple[int, int]  # (message, part)


def _field(where: Where, tail: str = ".image_url.url") -> str:
    return f"messages[{where[0]}].content[{where[1]}]{tail}"


def sniff(data: bytes) -> str | None:
    """The image type ``data`` starts like (PNG, JPEG, WebP, GIF), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _check_data_uri(url: str, where: Where) -> None:
    found = _DATA_URI.match(url)
    if found is None:
        raise invalid(
            f"{_field(where)} must be a base64 data URI (data:image/png;base64,...) or an "
            "http(s) URL",
            _field(where),
        )
    declared = found["type"].lower()
    if declared not in IMAGE_TYPES:
        raise invalid(
            f"{_field(where)} is {declared}; images must be one of {', '.join(IMAGE_TYPES)}",
            _field(where),
        )
    encoded = url[found.end() :]
    if len(encoded) > (MAX_IMAGE_BYTES + 2) // 3 * 4:
        raise invalid(f"{_field(where)} is over {MAX_IMAGE_BYTES >> 20} MiB", _field(where))
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{_field(where)} is not valid base64", _field(where)) from None
    if sniff(data) is None:
        raise invalid(f"{_field(where)} holds no PNG, JPEG, WebP or GIF image", _field(where))


def _check_image_part(part: dict[str, Any], where: Where) -> dict[str, Any]:
    """The part with ``image_url`` as an object (a bare URL string is accepted too)."""
    value = part.get("image_url")
    image = {"url": value} if isinstance(value, str) else value
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        raise invalid(
            f"{_field(where, '.image_url')} must be an object with a url", _field(where, "")
        )
    url = image["url"]
    scheme = url.split(":", 1)[0].lower()
    if scheme == "data":
        _check_data_uri(url, where)
    elif scheme not in ("http", "https"):
        raise invalid(
            f"{_field(where)} must be a data URI or an http(s) URL, not {scheme}:", _field(where)
        )
    return {**part, "image_url": image}


def check_parts(index: int, parts: list[Any]) -> list[dict[str, Any]]:
    """A message's content parts, each checked: text parts have text, image parts a data
    URI of an image or an http(s) URL. Other part types pass on to the engine."""
    out = []
    for j, part in enumerate(parts):
        where = (index, j)
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"{_field(where, '')} must be an object with a type", _field(where, ""))
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise invalid(f"{_field(where, '.text')} must be a string", _field(where, ".text"))
        out.append(_check_image_part(part, where) if part["type"] == "image_url" else part)
    return out


def _image_parts(body: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    found = []
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                found.append(((i, j), part))
    return found


def has_images(body: dict[str, Any]) -> bool:
    return bool(_image_parts(body))


def _remote_parts(body: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    return [(w, p) for w, p in _image_parts(body) if not p["image_url"]["url"].startswith("data:")]


def has_remote(body: dict[str, Any]) -> bool:
    return bool(_remote_parts(body))


async def inline_remote(body: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    """``body`` with every http(s) image fetched and sent on as a data URI."""
    remote = _remote_parts(body)
    if len(remote) > MAX_REMOTE_IMAGES:
        raise invalid(
            f"at most {MAX_REMOTE_IMAGES} image URLs per request; send more as data URIs",
            _field(remote[MAX_REMOTE_IMAGES][0]),
        )
    messages = [
        {**m, "content": list(m["content"])} if isinstance(m.get("content"), list) else m
        for m in body["messages"]
    ]
    for where, part in remote:
        uri = await fetch_image(part["image_url"]["url"], where, allow_private)
        image = {**part["image_url"], "url": uri}
        messages[where[0]]["content"][where[1]] = {**part, "image_url": image}
    return {**body, "messages": messages}


async def fetch_image(url: str, where: Where, allow_private: bool) -> str:
    """The image at ``url`` as a data URI, under the limits this module describes. Each
    hop gets a client of its own: no connection made for one checked name carries another."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT):
            for _ in range(MAX_REDIRECTS + 1):
                target = await _pinned(url, where, allow_private)
                async with (
                    httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
                    client.stream("GET", **target) as resp,
                ):
                    if resp.status_code in _REDIRECTS and resp.headers.get("location"):
                        url = urllib.parse.urljoin(url, resp.headers["location"])
                        continue
                    return await _read_image(resp, url, where)
    except TimeoutError:
        raise _unfetched(where, url, f"no image within {FETCH_TIMEOUT:g} s") from None
    except httpx.HTTPError as exc:
        raise _unfetched(where, url, type(exc).__name__) from None
    raise _unfetched(where, url, f"more than {MAX_REDIRECTS} redirects")


def _unfetched(where: Where, url: str, why: str) -> APIError:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return invalid(
        f"{_field(where)}: the gateway could not fetch {shown}: {why} (or send the image as "
        "a data URI)",
        _field(where),
    )


async def _pinned(url: str, where: Where, allow_private: bool) -> dict[str, Any]:
    """The request for ``url`` sent to an address checked here (a literal IP, the Host
    header and TLS name kept), so the connection goes where the check looked."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _unfetched(where, url, "only http and https URLs are fetched")
    if parts.username or parts.password:
        raise _unfetched(where, url, "URLs with credentials are not fetched")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise _unfetched(where, url, f"cannot resolve {host} ({exc})") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not allow_private and not all(a.is_global for a in addresses):
        raise _unfetched(
            where, url, f"{host} is a private address, and this gateway is reachable from others"
        )
    first = addresses[0]
    literal = f"[{first}]" if first.version == 6 else str(first)
    pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
    extensions = {"sni_hostname": host} if parts.scheme.lower() == "https" else {}
    return {"url": pinned, "headers": {"Host": parts.netloc}, "extensions": extensions}


async def _read_image(resp: httpx.Response, url: str, where: Where) -> str:
    if resp.status_code != 200:
        raise _unfetched(where, url, f"it answered HTTP {resp.status_code}")
    kind = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in IMAGE_TYPES:
        raise _unfetched(where, url, f"it is {kind or 'untyped'}, not {', '.join(IMAGE_TYPES)}")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        raise _unfetched(where, url, f"it is over {MAX_IMAGE_BYTES >> 20} MiB")
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise _unfetched(where, url, f"it is over {MAX_IMAGE_BYTES >> 20} MiB")
        chunks.append(chunk)
    data = b"".join(chunks)
    found = sniff(data)
    if found is None:
        raise _unfetched(where, url, "its bytes are no PNG, JPEG, WebP or GIF image")
    return f"data:{found};base64,{base64.b64encode(data).decode()}"
