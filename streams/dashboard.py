"""The HTML dashboard at `/` of every worker (DESIGN §8): one self-contained page, no build, no CDN.

The page is static; it polls the worker's own /api/niches, /api/triggers and /metrics, so whatever
worker an operator opens answers with the data it serves. The only server-side input is the list
of factories, written into the page as JSON so it needs no extra endpoint.

Faust mounts its "production_index" blueprint (a `{"status": "OK"}` stub) at `/` too. Blueprints
are applied when the web server initialises, after module import; aiohttp resolves resources that
share a path in the order they were added, so a page added at import time is the one served.
`register` refuses to run once the blueprints are applied, when it could only lose.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import faust

PLACEHOLDER = "__C2M_CONFIG__"


def page_html(factories: list[str]) -> str:
    """The dashboard page with the factory list filled in (escaped for a <script> element)."""
    template = resources.files("streams").joinpath("dashboard.html").read_text(encoding="utf-8")
    config = json.dumps({"factories": list(factories)})
    # "</script>" or "<!--" inside a factory id must not end the JSON island early.
    config = config.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return template.replace(PLACEHOLDER, config)


def register(app: faust.App, factories: list[str]) -> None:
    """Serve the dashboard at `/` of `app`'s web server, ahead of Faust's own index stub."""
    if app.web.blueprints.applied:
        raise RuntimeError("dashboard.register must run before the web server starts, or Faust's "
                           "index at / would shadow it")
    body = page_html(factories)

    @app.page("/", name="c2m_dashboard")
    async def dashboard(web: Any, request: Any) -> Any:
        """The live dashboard; no-cache so a redeployed worker's page is picked up on reload."""
        return web.html(body, headers={"Cache-Control": "no-cache"})
