"""The replica's HTTP face besides /metrics and /health: the JSON API, its docs, the pages.

Every HTML response carries a Content-Security-Policy that allows scripts, styles and
connections from this origin only: no inline script or style, no plugin, no framing, so
even a string that escaped the templates' autoescaping could not run.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp
from userstats.query.api import Api, ApiFirst, Backend
from userstats.query.assets import Assets
from userstats.query.openapi import Docs
from userstats.query.pages import Pages, environment
from userstats.shared.settings import Settings

PACKAGE = __name__.rpartition(".")[0]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def install(app: FastAPI, backend: Backend, settings: Settings) -> ASGIApp:
    """Add the API and /docs, and the pages unless `userstats.web_pages` is off; returns the
    app to serve (the API's requests skip the app's routing, see ApiFirst)."""
    u = settings.userstats
    assets = Assets(PACKAGE, HEADERS)
    env = environment(PACKAGE, assets)
    api = Api(backend, u.request_max_bytes, HEADERS)
    routes = [*api.routes(), *Docs(env, HEADERS).routes()]
    routes += assets.routes()  # /docs uses the stylesheet too
    if u.web_pages:
        routes += Pages(backend, env, HEADERS).routes()
    app.router.routes.extend(routes)
    return ApiFirst(api, app)
