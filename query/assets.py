"""The pages' static files (CSS, JS, the vendored chart library), served from memory.

They ship inside the package (package data) and are read once at start-up through
importlib.resources, so an installed wheel serves them as a checkout does. URLs carry a
hash of the content (`/static/app.js?v=1a2b...`), so a browser may keep them forever and
still never runs an old script against a new page.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
FOREVER = "public, max-age=31536000, immutable"


class Asset:
    def __init__(self, name: str, body: bytes) -> None:
        self.name = name
        self.body = body
        self.version = hashlib.sha256(body).hexdigest()[:12]
        self.media_type = TYPES[name[name.rfind(".") :]]


class Assets:
    def __init__(self, package: str, headers: dict[str, str]) -> None:
        self._files: dict[str, Asset] = {}
        self._collect(resources.files(package).joinpath("static"), "")
        self._headers = headers

    def _collect(self, folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            name = prefix + entry.name
            if entry.is_dir():
                self._collect(entry, name + "/")
            elif entry.name[entry.name.rfind(".") :] in TYPES:
                self._files[name] = Asset(name, entry.read_bytes())

    def names(self) -> list[str]:
        return sorted(self._files)

    def url(self, name: str) -> str:
        """The versioned URL of a static file (KeyError for a file that does not exist)."""
        return f"/static/{name}?v={self._files[name].version}"

    def routes(self) -> list[Route]:
        return [
            Route("/static/{name:path}", self._serve, methods=["GET", "HEAD"]),
            Route("/favicon.ico", self._favicon, methods=["GET", "HEAD"]),
        ]

    async def _serve(self, request: Request) -> Response:
        asset = self._files.get(request.path_params["name"])
        if asset is None:
            return Response(b"no such file\n", 404, self._headers, "text/plain")
        return self._response(asset, request)

    async def _favicon(self, request: Request) -> Response:
        return self._response(self._files["favicon.svg"], request)

    def _response(self, asset: Asset, request: Request) -> Response:
        tag = f'"{asset.version}"'
        # versioned URLs never change; an unversioned (or stale) one must be revalidated
        cache = FOREVER if request.query_params.get("v") == asset.version else "no-cache"
        headers = {**self._headers, "ETag": tag, "Cache-Control": cache}
        if request.headers.get("if-none-match", "").removeprefix("W/") == tag:
            return Response(None, 304, headers)
        return Response(asset.body, 200, headers, asset.media_type)
