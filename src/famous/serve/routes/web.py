"""The web UI: ``GET /`` answers its page, ``GET /ui/{file}`` its scripts and styles, all
package data under ``famous/serve/web/``.

The page is served with headers that keep a hostile page or an injected string from running
anything: a strict Content-Security-Policy (only this gateway's own scripts and styles, no
inline code, no framing, no forms posting elsewhere), ``nosniff`` and no referrer. Only the
files that exist in that folder are served: a name with a separator, ``..`` or a type the
UI does not ship is a 404, whatever encoding it came in.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from famous.serve.errors import APIError

router = APIRouter()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@cache
def shipped_files() -> dict[str, str]:
    """File name -> content type of every file the UI ships (read once: package data)."""
    folder = resources.files("famous.serve") / "web"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = CONTENT_TYPES[suffix]
    return files


def _file(name: str) -> Response:
    content_type = shipped_files().get(name)
    if content_type is None:
        raise APIError(404, f"no UI file {name!r}", code="not_found")
    data = (resources.files("famous.serve") / "web" / name).read_bytes()
    return Response(data, media_type=content_type, headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """The UI's single page."""
    return _file("index.html")


@router.get("/ui/{name:path}", include_in_schema=False)
async def ui_file(name: str) -> Response:
    """One of the UI's own files; only names listed in the package folder, so no path
    (``..``, ``/``, ``\\``, encoded or not) can reach anything else."""
    return _file(name)
