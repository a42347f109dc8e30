"""The dashboard: a page for people who would rather look than read, served by the API itself.

::

    GET  /                  the page (HTML), this run's CSRF token in a <meta> tag
    GET  /static/NAME       its script, style sheet and icon (a fixed list; anything else 404)

Static files shipped in the package (``edge/control/static/``): no build step,
no framework, nothing from another site. The page reads only what the API
already serves (``/health``, ``/tunnel/status``, ``/calls``, ``/record/status``,
``/mcp/servers``, ``/plugins``) and follows ``/events``; its two actions (stop
a capture, disconnect the tunnel) are POSTs with the CSRF token in
``X-Edge-CSRF``, which the guard (``edge.control.guard``) checks for requests
from the API's own origin.

Every answer is ``no-store`` (the page holds the token) and carries a strict
Content-Security-Policy (``default-src 'self'``, no inline script: the script
reads the token from the <meta> tag), ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY`` (no other page may frame it), ``nosniff`` and
``Cross-Origin-Resource-Policy: same-origin`` (no other page may load its files).
"""

from __future__ import annotations

import html
from importlib import resources
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

#: The page, and where its CSRF token goes.
PAGE: Final = "dashboard.html"
TOKEN_PLACEHOLDER: Final = "__EDGE_CSRF__"
#: The files ``GET /static/NAME`` serves, with their content types: nothing else.
STATIC_FILES: Final = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: The page's Content-Security-Policy: everything from the daemon, no inline script or style
#: sheet, no framing, no plugins, no forms.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    "object-src 'none'"
)
#: Headers on every dashboard answer.
SECURITY_HEADERS: Final = {
    "cache-control": "no-store",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def read_static(name: str) -> bytes:
    """One shipped file of ``edge/control/static/`` (package data, also in a wheel)."""
    return resources.files(__package__ or "edge.control").joinpath("static", name).read_bytes()


def render_page(csrf_token: str) -> bytes:
    """The page with ``csrf_token`` in its <meta name="edge-csrf"> tag."""
    page = read_static(PAGE).decode("utf-8")
    if TOKEN_PLACEHOLDER not in page:
        raise RuntimeError(f"{PAGE} has no {TOKEN_PLACEHOLDER} for the CSRF token")
    return page.replace(TOKEN_PLACEHOLDER, html.escape(csrf_token, quote=True)).encode("utf-8")


def routes(csrf_token: str) -> list[Route]:
    """GET / and GET /static/NAME; the files are read once, when the app is built."""
    from starlette.exceptions import HTTPException
    from starlette.responses import Response
    from starlette.routing import Route

    page = render_page(csrf_token)
    files = {name: (read_static(name), kind) for name, kind in STATIC_FILES.items()}

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            raise HTTPException(404, f"no such file: the dashboard ships {', '.join(files)}")
        body, kind = found
        return Response(body, media_type=kind, headers=SECURITY_HEADERS)

    return [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
