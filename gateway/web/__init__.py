"""The web pages the gateway serves: a chat page at / and a live status page at /status. Static
files from the package (no CDN, no build step); they call only the public API, so they work
through ngrok and behind a trusted proxy as any client does. `--no-web` turns them off."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
# the pages run only their own scripts and styles and talk only to this server
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_PATHS = ("/", "/status")


def _page(name: str):
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Content-Security-Policy": POLICY})

    return page


async def _policy(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/"):
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/status", _page("status.html"))
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_policy)
