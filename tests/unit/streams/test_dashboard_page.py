"""The dashboard page: served at / ahead of Faust's own index, factories embedded safely. No broker."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import faust
import pytest
from aiohttp.test_utils import make_mocked_request

from streams import dashboard


def _config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="c2m-config">(.*?)</script>', html, re.S)
    assert found, "config island missing"
    return json.loads(found.group(1))


def _get(app: faust.App, path: str) -> Any:
    async def go() -> Any:
        req = make_mocked_request("GET", path, app=app.web.web_app)
        match = await app.web.web_app.router.resolve(req)
        return await match.handler(req)

    return asyncio.run(go())


def test_page_embeds_the_factories_and_needs_nothing_from_the_network() -> None:
    html = dashboard.page_html(["f-gz-dress", "f-hz-tops"])
    assert _config(html) == {"factories": ["f-gz-dress", "f-hz-tops"]}
    assert dashboard.PLACEHOLDER not in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must work offline"


def test_a_hostile_factory_id_cannot_close_the_script_element() -> None:
    html = dashboard.page_html(["</script><script>alert(1)</script>"])
    assert html.count("</script>") == dashboard.page_html([]).count("</script>")
    assert _config(html)["factories"] == ["</script><script>alert(1)</script>"]


def test_dashboard_wins_over_fausts_index_at_root() -> None:
    app = faust.App("c2m-unit-dashboard")
    dashboard.register(app, ["f-1"])
    app.web.blueprints.apply(app.web)  # what the web server does when it starts
    assert "production_index" in app.web.blueprints._active, "Faust's index is mounted at / as well"
    resp = _get(app, "/")
    assert resp.content_type == "text/html"
    assert b"Latest triggers per factory" in resp.body
    assert _config(resp.body.decode())["factories"] == ["f-1"]


def test_register_after_the_server_started_is_refused() -> None:
    app = faust.App("c2m-unit-dashboard-late")
    app.web.blueprints.apply(app.web)
    with pytest.raises(RuntimeError, match="before the web server starts"):
        dashboard.register(app, ["f-1"])
