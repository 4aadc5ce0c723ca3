"""HTTP client for the Fleet REST API, configured from a fleetctl context.

Every failure becomes a `CLIError` carrying one readable line: non-2xx responses are decoded
from Fleet's error envelope `{"message", "errors": [{"name", "reason"}]}`, and transport
failures name the address that could not be reached.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from fleetctl.context import Context
from fleetctl.errors import CLIError

LOGIN_HINT = "Please log in with: fleetctl login"
# Fleet's 403 reason while an admin-required password reset is pending.
PASSWORD_RESET_REQUIRED = "password reset required"


def reset_command(email: str) -> str:
    """The command that sets the new password an admin required."""
    return f"fleetctl login --email {email or '<email>'} --new-password '<new password>'"


class APIError(CLIError):
    """A non-2xx answer from Fleet, decoded from its error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        reasons: list[str],
        retry_after: str | None = None,
        hint: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.reasons = reasons
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(self._render())

    def __str__(self) -> str:
        return self._render()  # `hint` may be added after construction

    @property
    def reason(self) -> str:
        """The most specific explanation the server gave."""
        return "; ".join(self.reasons) or self.message

    def _render(self) -> str:
        text = self.message
        if self.reasons and self.reason != self.message:
            text = f"{self.message}: {self.reason}" if self.message else self.reason
        text = f"{text} (HTTP {self.status})"
        if self.status == 401:
            text += f". Token invalid or session expired. {LOGIN_HINT}"
        if self.hint:
            text += f". {self.hint}"
        return text

    @property
    def password_reset_required(self) -> bool:
        return self.status == 403 and PASSWORD_RESET_REQUIRED in self.reason.lower()

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        message = response.reason_phrase or f"HTTP {response.status_code}"
        reasons: list[str] = []
        try:
            body = response.json()
        except ValueError:
            snippet = " ".join(response.text.split())[:200]
            if snippet:
                reasons.append(snippet)
        else:
            if isinstance(body, dict):
                message = str(body.get("message") or body.get("error") or message)
                for item in body.get("errors") or []:
                    if isinstance(item, dict) and item.get("reason"):
                        reasons.append(str(item["reason"]))
        return cls(response.status_code, message, reasons, response.headers.get("retry-after"))


def ssl_context(ctx: Context) -> ssl.SSLContext:
    """TLS settings shared by HTTP and the live-query websocket."""
    try:
        context = ssl.create_default_context(cafile=ctx.rootca or None)
    except (OSError, ssl.SSLError) as exc:
        hint = "" if os.path.isabs(ctx.rootca) else (
            " (a relative path is read from the current directory; store an absolute one "
            "with: fleetctl config set --rootca /path/to/ca.crt)")
        raise CLIError(f"reading root CA {ctx.rootca}: {exc}{hint}") from None
    if ctx.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_address(address: str) -> str:
    if not address:
        raise CLIError(
            "set the Fleet API address with: fleetctl config set --address https://localhost:8080"
        )
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CLIError(f"invalid address {address!r}: it must start with https:// (or http://)")
    return address.rstrip("/")


# Where Fleet serves its current REST API (Fleet's `/api/v1/fleet` is the same routes).
API = "/api/latest/fleet"


@dataclass(frozen=True, slots=True)
class Login:
    """What `POST /login` answered."""

    token: str  # empty when the server sent none
    user: dict[str, Any]
    mfa_required: bool  # 202: the server mailed a sign-in link instead of issuing a token


class FleetClient:
    """A session against one Fleet server, with one method per API call fleetctl makes
    (as Fleet's `server/service/client_*.go`): commands never spell a URL. Use as a context
    manager. Every method raises `APIError` for a non-2xx answer and `CLIError` when the
    server cannot be reached or answers something that is not JSON."""

    def __init__(self, ctx: Context, *, debug: bool = False, authenticated: bool = True) -> None:
        self.ctx = ctx
        self.address = check_address(ctx.address)
        self.debug = debug
        if authenticated and not ctx.token:
            raise CLIError(f"Token missing. {LOGIN_HINT}")
        headers = dict(ctx.custom_headers)
        if authenticated:
            headers["Authorization"] = f"Bearer {ctx.token}"
        self.ssl = ssl_context(ctx)
        self._http = httpx.Client(
            base_url=self.address + ctx.url_prefix,
            headers=headers,
            verify=self.ssl,
            timeout=httpx.Timeout(60.0, connect=15.0),
        )

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def log(self, line: str) -> None:
        if self.debug:
            print(f"[debug] {line}", file=sys.stderr)

    # --- sessions -------------------------------------------------------------------------

    def setup(self, admin: dict[str, Any], org_name: str, server_url: str) -> dict[str, Any]:
        """`POST /api/v1/setup`: create the first admin; Fleet answers 404 once one exists."""
        return self._call("POST", "/api/v1/setup", body={
            "admin": admin, "org_info": {"org_name": org_name}, "server_url": server_url})

    def login(self, email: str, password: str) -> Login:
        response = self._request("POST", f"{API}/login",
                                 body={"email": email, "password": password})
        if response.status_code == 202:
            return Login(token="", user={}, mfa_required=True)
        try:
            body = response.json()
            token, user = body.get("token"), body.get("user") or {}
        except (ValueError, AttributeError):
            token, user = None, {}
        return Login(token=str(token or ""), user=user if isinstance(user, dict) else {},
                     mfa_required=False)

    def logout(self) -> None:
        self._request("POST", f"{API}/logout")

    def perform_required_password_reset(self, new_password: str) -> None:
        self._call("POST", f"{API}/perform_required_password_reset",
                   body={"new_password": new_password})

    # --- hosts ----------------------------------------------------------------------------

    def list_hosts(self, page: int, per_page: int,
                   label_id: int | None = None) -> list[dict[str, Any]]:
        """One page of `GET /hosts` (of `GET /labels/{id}/hosts` with `label_id`)."""
        path = f"{API}/hosts" if label_id is None else f"{API}/labels/{label_id}/hosts"
        hosts: list[dict[str, Any]] = self._call(
            "GET", path, params={"page": page, "per_page": per_page}).get("hosts") or []
        return hosts

    def get_host_by_identifier(self, identifier: str) -> Any:
        """The host whose hostname, UUID or serial is `identifier`."""
        return self._call("GET", f"{API}/hosts/identifier/{quote(identifier, safe='')}"
                          ).get("host")

    def list_software(self, kind: str, page: int, per_page: int) -> tuple[list[Any], bool]:
        """One page of `GET /software/<kind>` (titles or versions), and whether more follow."""
        key = "software_titles" if kind == "titles" else "software"
        body = self._call("GET", f"{API}/software/{kind}",
                          params={"page": page, "per_page": per_page})
        return body.get(key) or [], bool((body.get("meta") or {}).get("has_next_results"))

    # --- specs ----------------------------------------------------------------------------

    def get_query_specs(self) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = self._call("GET", f"{API}/spec/queries").get("specs") or []
        return specs

    def get_query_spec(self, name: str) -> Any:
        return self._call("GET", f"{API}/spec/queries/{quote(name, safe='')}").get("specs")

    def apply_query_specs(self, specs: list[dict[str, Any]]) -> None:
        self._call("POST", f"{API}/spec/queries", body={"specs": specs})

    def delete_query(self, name: str) -> None:
        self._call("DELETE", f"{API}/queries/{quote(name, safe='')}")

    def get_label_specs(self) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = self._call("GET", f"{API}/spec/labels").get("specs") or []
        return specs

    def get_label_spec(self, name: str) -> Any:
        return self._call("GET", f"{API}/spec/labels/{quote(name, safe='')}").get("specs")

    def apply_label_specs(self, specs: list[dict[str, Any]]) -> None:
        self._call("POST", f"{API}/spec/labels", body={"specs": specs})

    def delete_label(self, name: str) -> None:
        self._call("DELETE", f"{API}/labels/{quote(name, safe='')}")

    def get_enroll_secret_spec(self) -> Any:
        return self._call("GET", f"{API}/spec/enroll_secret").get("spec")

    def apply_enroll_secret_spec(self, spec: dict[str, Any]) -> None:
        self._call("POST", f"{API}/spec/enroll_secret", body={"spec": spec})

    def get_app_config(self) -> dict[str, Any]:
        return self._call("GET", f"{API}/config")

    def modify_app_config(self, patch: dict[str, Any], *, dry_run: bool = False
                          ) -> dict[str, Any]:
        return self._call("PATCH", f"{API}/config", body=patch,
                          params={"dry_run": "true"} if dry_run else None)

    # --- queries and live queries ---------------------------------------------------------

    def list_queries(self, search: str, team_id: int | None = None) -> list[dict[str, Any]]:
        """Saved queries whose name contains `search`, of one team when `team_id` is set."""
        params: dict[str, Any] = {"query": search}
        if team_id:
            params["team_id"] = team_id
        queries: list[dict[str, Any]] = self._call("GET", f"{API}/queries", params=params
                                                   ).get("queries") or []
        return queries

    def run_live_query_by_identifiers(self, sql: str | None, query_id: int | None,
                                      hosts: list[str], labels: list[str]) -> dict[str, Any]:
        """Start a campaign on hosts named by hostname/UUID/serial and on label names."""
        return self._call("POST", f"{API}/queries/run_by_identifiers", body={
            "query": sql, "query_id": query_id, "selected": {"hosts": hosts, "labels": labels}})

    def live_results_url(self) -> str:
        """The ws(s):// URL of the live-query results websocket."""
        return self._websocket_url(f"{API}/results/websocket")

    # --- operations -----------------------------------------------------------------------

    def trigger_schedule(self, name: str) -> None:
        """`POST /trigger?name=`: an ad hoc run of the named cron schedule (409 while a run
        is pending, 404 naming the valid schedules)."""
        self._request("POST", f"{API}/trigger", params={"name": name})

    # --- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; raise `APIError` for non-2xx, `CLIError` if unreachable."""
        started = time.monotonic()
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.RequestError as exc:
            self.log(f"{method} {path} failed: {exc!r}")
            reason = str(exc) or type(exc).__name__
            raise CLIError(f"could not connect to {self.address}: {reason}") from None
        self.log(
            f"{method} {response.request.url} -> {response.status_code} "
            f"({(time.monotonic() - started) * 1000:.0f} ms)"
        )
        if response.status_code >= 300:
            error = APIError.from_response(response)
            if error.password_reset_required:
                error.hint = ("An admin requires a new password for this account; set it "
                              f"with: {reset_command(self.ctx.email)}")
            raise error
        return response

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a request and decode its JSON object body (empty bodies become `{}`)."""
        response = self._request(method, path, body=body, params=params)
        if not response.content.strip():
            return {}
        try:
            decoded = response.json()
        except ValueError:
            raise CLIError(f"{method} {path}: the server sent invalid JSON") from None
        if not isinstance(decoded, dict):
            raise CLIError(f"{method} {path}: expected a JSON object from the server")
        return decoded

    def _websocket_url(self, path: str) -> str:
        """The ws(s):// URL for `path`, keeping host, port and url-prefix."""
        parts = urlsplit(self.address)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{self.ctx.url_prefix}{path}"
