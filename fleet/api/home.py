"""`/`: a small HTML page with the first-run commands, until the web UI replaces it.

Someone who opens the server's address in a browser should learn what to do next (create the
admin with fleetctl, enroll agents), not read a JSON 404. The page is static apart from the
server's own address, which is escaped; it loads no script, style or image.
"""

from __future__ import annotations

import html
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from fleet import __version__
from fleet.api.deps import CheckedRoute
from fleet.core.authz import authorize_none

router = APIRouter(route_class=CheckedRoute)

# What a Host header may hold for the page to show it: a name or address, maybe a port.
_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Fleet {version}</title></head>
<body>
<h1>Fleet {version}</h1>
<p>This server is running. The web interface is not built yet; use <code>fleetctl</code>
and the REST API at <code>{url}/api/latest/fleet/</code>.</p>
<h2>First run: create the admin user</h2>
<pre>fleetctl config set --address {url} --rootca /path/to/fleet-ca.crt
fleetctl setup --email admin@example.com --name Admin --org-name "My Org" --password '...'
fleetctl get enroll_secret</pre>
<h2>Enroll agents</h2>
<pre>osquery-perf --server_url {url} --enroll_secret SECRET --host_count 10 \\
    --tls_server_certs /path/to/fleet-ca.crt</pre>
<p>A real <code>osqueryd</code> needs the TLS plugin flags that <code>fleet serve</code>
prints when it starts (enroll, config, distributed and logger endpoints under
<code>{url}/api/osquery/</code>).</p>
<h2>Operations</h2>
<ul>
<li><a href="{prefix}/healthz">{prefix}/healthz</a>: 200 when the database and the broker
answer</li>
<li><a href="{prefix}/version">{prefix}/version</a>: build information</li>
<li><a href="{prefix}/api/latest/fleet/docs">REST API documentation</a> (its
<a href="{prefix}/api/latest/fleet/openapi.json">OpenAPI document</a>)</li>
</ul>
</body>
</html>
"""


@router.get("/", include_in_schema=False)
async def home(request: Request) -> HTMLResponse:
    authorize_none("the first-run page is public")
    prefix = request.scope.get("root_path", "")
    host = request.headers.get("host", "")
    if not _HOST.fullmatch(host):
        host = "<server address>"
    url = f"{request.url.scheme}://{host}{prefix}"
    page = _PAGE.format(version=html.escape(__version__), url=html.escape(url),
                        prefix=html.escape(prefix))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
