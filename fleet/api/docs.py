"""`/api/latest/fleet/docs`: the REST API's interactive documentation (Swagger UI).

The page renders the OpenAPI document served beside it (`openapi.json`); its script, style
and icon come from the installed `swagger-ui-bundle` package, never from a CDN, and its
own start-up code is a file (`docs/init.js`), not an inline script, so the page runs under a
CSP that allows only this server's scripts, styles and images (`data:` images too: Swagger
UI's stylesheet draws its icons with them). Every URL on the page is relative, so it works
under `server.url_prefix` unchanged.

No authentication: the page and its assets say nothing the OpenAPI document, public as in
Fleet, does not. Trying a request needs a token (the Authorize button), like any client.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from fleet.api.deps import CheckedRoute
from fleet.api.errors import error_response
from fleet.core.authz import authorize_none

router = APIRouter(route_class=CheckedRoute)

PAGE_PATH = "/api/latest/fleet/docs"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The assets are public and change only with the package: browsers may keep them a day.
ASSET_CACHE = "public, max-age=86400"

_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fleet REST API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>The interactive documentation needs JavaScript; the API's description is the
<a href="openapi.json">OpenAPI document</a>.</noscript>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# Swagger UI 4 (what the package bundles) reads OpenAPI 3.0, so the page shows the 3.1
# document as 3.0: `anyOf: [X, {type: null}]` becomes X with `nullable: true`.
_INIT = b""""use strict";
function as30(node) {
  if (Array.isArray(node)) return node.map(as30);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) out[key] = as30(value);
  if (Array.isArray(out.anyOf) && out.anyOf.some((s) => s.type === "null")) {
    const rest = out.anyOf.filter((s) => s.type !== "null");
    delete out.anyOf;
    if (rest.length === 1) Object.assign(out, rest[0]); else out.anyOf = rest;
    out.nullable = true;
  }
  return out;
}
fetch("openapi.json").then((answer) => answer.json()).then((doc) => {
  SwaggerUIBundle({
    spec: Object.assign(as30(doc), {openapi: "3.0.3"}), dom_id: "#swagger-ui",
    deepLinking: true, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout",
  });
});
"""

# name -> media type, of the package's files the page loads.
_BUNDLED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@functools.cache
def _bundled(name: str) -> bytes:
    return (Path(str(swagger_ui_path)) / name).read_bytes()


def _answer(content: bytes, media_type: str, cache: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Security-Policy": CSP, "Cache-Control": cache})


@router.get(PAGE_PATH, include_in_schema=False)
async def docs_page() -> Response:
    authorize_none("the API's documentation is public, as its OpenAPI document is")
    return _answer(_PAGE, "text/html; charset=utf-8", "no-store")


@router.get(PAGE_PATH + "/{name}", include_in_schema=False)
async def docs_asset(name: str) -> Response:
    authorize_none("the documentation's assets are public")
    if name == "init.js":
        return _answer(_INIT, "text/javascript; charset=utf-8", ASSET_CACHE)
    if name not in _BUNDLED:
        return error_response(404, "Resource Not Found", f"no docs asset {name}")
    return _answer(_bundled(name), _BUNDLED[name], ASSET_CACHE)
