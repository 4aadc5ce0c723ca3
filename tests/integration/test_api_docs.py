"""The REST API describes itself: every operation's answers in the OpenAPI document, and the
interactive docs page (Swagger UI from the installed package, under a strict CSP, also
under a URL prefix). That the answers match the document is test_rest_fuzz's part."""

from __future__ import annotations

import re
import typing
from typing import Any

import httpx
import pytest

from fleet.api import docs
from fleet.api.hosts import HostFacts
from fleet.core.hosts import Host
from fleet.server import create_app
from fleet.service.context import ServiceContext

OPENAPI = "/api/latest/fleet/openapi.json"
ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
PUBLIC_OPERATIONS = {("post", "/api/latest/fleet/login"), ("post", "/api/setup"),
                     ("post", "/api/v1/setup"), ("post", "/api/v1/fleet/login")}


def _schema(answer: dict[str, Any]) -> Any:
    return answer.get("content", {}).get("application/json", {}).get("schema")


async def test_every_operation_documents_its_answers(ctx: ServiceContext) -> None:
    transport = httpx.ASGITransport(app=create_app(ctx, start_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        r = await c.get(OPENAPI)
    assert r.status_code == 200
    doc = r.json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's, not Fleet's
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method} {path}"
            answers = op["responses"]
            if "text/csv" in answers["200"].get("content", {}):  # a download (hosts report)
                assert answers["200"]["content"]["text/csv"]["schema"], where
            else:
                assert _schema(answers["200"])["$ref"].startswith("#/components/schemas/"), where
            errors = {status for status in answers if status != "200"}
            assert {"400", "500"} <= errors, where
            for status in errors:
                assert _schema(answers[status]) == ENVELOPE, f"{where} {status}"
            if (method, path) in PUBLIC_OPERATIONS:
                assert "security" not in op, where
            else:  # every other operation takes a token, and says so
                assert op["security"] == [{"bearer": []}], where
                assert "401" in errors, where


def test_the_host_object_has_the_domain_types_of_host() -> None:
    declared = {name: field.annotation for name, field in HostFacts.model_fields.items()}
    hints = typing.get_type_hints(Host)
    assert declared == {name: hints[name] for name in declared}


def _references(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


@pytest.mark.parametrize("prefix", ["", "/fleet"])
async def test_docs_page_loads_only_its_own_assets(ctx: ServiceContext, prefix: str) -> None:
    ctx.cfg = ctx.cfg.with_overrides({"server.url_prefix": prefix})
    transport = httpx.ASGITransport(app=create_app(ctx, start_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        page_url = httpx.URL(f"https://fleet.test{prefix}/api/latest/fleet/docs")
        r = await c.get(page_url)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == docs.CSP
        assert "'unsafe-inline'" not in docs.CSP and "'unsafe-eval'" not in docs.CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), "an inline script"
        references = _references(r.text)
        assert all("//" not in ref and not ref.startswith("/") for ref in references)
        served = {}
        for ref in references:
            asset = await c.get(page_url.join(ref))
            assert asset.status_code == 200, (ref, asset.text[:200])
            served[ref] = asset
            if not ref.endswith(".json"):
                assert asset.headers["content-security-policy"] == docs.CSP, ref
        assert served["docs/swagger-ui-bundle.js"].text.startswith("/*! For license")
        assert served["docs/swagger-ui-bundle.js"].headers["content-type"].startswith(
            "text/javascript")
        assert served["docs/swagger-ui.css"].headers["content-type"].startswith("text/css")
        # The start-up script loads the document beside the page, and it is served there.
        init = served["docs/init.js"].text
        assert 'fetch("openapi.json")' in init
        spec = await c.get(page_url.join("openapi.json"))
        assert spec.status_code == 200 and spec.json()["paths"]
        if prefix:  # try-it-out requests go under the prefix too
            assert spec.json()["servers"] == [{"url": prefix}]

        r = await c.get(page_url.join("docs/swagger-ui.js.map"))
        assert r.status_code == 404 and r.json()["message"] == "Resource Not Found"
