"""`/` in a browser: an HTML page with the first-run commands, also under a URL prefix."""

from __future__ import annotations

import httpx
import pytest

from fleet.server import create_app
from fleet.service.context import ServiceContext


@pytest.mark.parametrize("prefix", ["", "/fleet"])
async def test_root_serves_setup_page(ctx: ServiceContext, prefix: str) -> None:
    ctx.cfg = ctx.cfg.with_overrides({"server.url_prefix": prefix})
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        r = await c.get(prefix + "/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "fleetctl setup --email" in r.text
        assert f"fleetctl config set --address https://fleet.test{prefix} " in r.text
        assert f'href="{prefix}/healthz"' in r.text
        assert "<script" not in r.text
        # A Host header that is not a host name is not echoed into the page.
        r = await c.get(prefix + "/", headers={"Host": "x<b>y"})
        assert r.status_code == 200 and "x<b>y" not in r.text
        assert "--address https://&lt;server address&gt;" in r.text
