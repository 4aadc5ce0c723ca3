"""Fuzzing the REST API from its own OpenAPI document, on both backends: no request gets a
5xx, every answer has a status its operation documents and JSON that matches the documented
schema (with no undocumented field), and the server still works afterwards.

The operations, parameters and body schemas come from `GET /api/latest/fleet/openapi.json`
of the production app (`fleet.server.create_app`), so a new route is fuzzed without being
listed here. Hypothesis draws each case from a fixed seed (reproducible, bounded): values
that fit the schema, the same with one value swapped for something hostile (lone
surrogates, integers beyond 64 bits, over-long strings, wrong JSON types), unknown keys and
parameters, bodies that are not JSON, other content types, and no or a bad token.
A path value the route's pattern refuses (`abc` for an id) reaches no operation: the
router's 404 or 405 in Fleet's envelope is the answer then.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fleet.server import create_app
from fleet.service.context import ServiceContext
from fleet.store import hosts as host_store
from fleet.store.db import utcnow
from tests.integration.conftest import ADMIN_EMAIL, PASSWORD

EXAMPLES_PER_OPERATION = 60
OPENAPI = "/api/latest/fleet/openapi.json"
# Paths served twice (under /api/v1/fleet and /api/latest/fleet) are fuzzed once.
DUPLICATE_PREFIXES = ("/api/v1/fleet/", "/api/2022-04/fleet/", "/api/v1/setup")
# Ending the fuzzer's own session would only turn the rest of the run into 401s.
SELF_ENDING = {("post", "/api/latest/fleet/logout")}
URL_TEXT = 4000

hostile_strings = st.sampled_from([
    "\ud800", "a\udfffb", "\udc80\ud800", "\x00", "\U0001f600", "", " ", "9" * 40,
    "x" * 70_000, "%00", "../../etc/passwd", "' OR 1=1 --", "<script>", "\u202e", "-1"])
hostile_scalars = st.one_of(
    st.none(), st.booleans(), hostile_strings,
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([2**63, -2**63 - 1, 2**64, 10**400, 1e308, float("inf"), float("nan")]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
hostile = st.recursive(hostile_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=5)


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def from_schema(schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for a JSON schema as FastAPI writes them; at any depth, about one in eight is
    a hostile value instead."""
    fitting = _fitting(_resolve(schema, doc), doc)
    return st.one_of(*[fitting] * 7, hostile)


def _fitting(schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return st.one_of([from_schema(s, doc) for s in alternatives])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(max_size=min(schema.get("maxLength", 40), 40)) | hostile_strings
    if kind == "integer":
        low = int(schema.get("minimum", -2**63))
        high = int(min(schema.get("maximum", 2**63 - 1), 2**63 - 1))
        return st.integers(min_value=low, max_value=high) | st.integers(0, 5)
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), doc), max_size=4)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, doc) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, doc) for k, v in properties.items()
                      if k not in required})
    return hostile  # no type given: anything


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # with {placeholders}
    path_params: tuple[str, ...]
    int_params: frozenset[str]  # path parameters the route matches only as digits
    query_params: tuple[tuple[str, dict[str, Any]], ...]
    body: dict[str, Any] | None
    answers: Mapping[str, dict[str, Any] | None]  # status -> schema of its JSON


@dataclass
class Case:
    operation: Operation
    path: str
    params: dict[str, Any]
    body: Any  # JSON value, or bytes sent as they are, or None for no body
    content_type: str | None
    auth: str  # "admin", "none" or "bad"
    routed: bool  # every path value fits its route's pattern

    def describe(self) -> str:
        text = f"{self.operation.method.upper()} {self.path} params={self.params!r} " \
               f"body={self.body!r} type={self.content_type} auth={self.auth}"
        return text if len(text) < 700 else text[:700] + "..."


def operations(doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in sorted(doc["paths"].items()):
        if path.startswith(DUPLICATE_PREFIXES):
            continue
        for method, op in sorted(methods.items()):
            if (method, path) in SELF_ENDING:
                continue
            params = op.get("parameters", [])
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            in_path = [p for p in params if p["in"] == "path"]
            found.append(Operation(
                method, path, tuple(p["name"] for p in in_path),
                frozenset(p["name"] for p in in_path
                          if _resolve(p.get("schema", {}), doc).get("type") == "integer"),
                tuple((p["name"], p.get("schema", {})) for p in params if p["in"] == "query"),
                body.get("schema"),
                {status: answer.get("content", {}).get("application/json", {}).get("schema")
                 for status, answer in op["responses"].items()}))
    return found


def _closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to other ones: an
    answer's field the document does not name is a mismatch."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {k: _closed(v) for k, v in schema.items()}
    if isinstance(closed.get("properties"), dict):
        closed.setdefault("additionalProperties", False)
    return closed


class Answers:
    """Checks an answer against what its operation documents."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.components = _closed(doc.get("components", {}))
        self.validators: dict[tuple[str, str, str], Draft202012Validator] = {}

    def mismatch(self, case: Case, r: httpx.Response) -> str | None:
        op, status = case.operation, str(r.status_code)
        if status not in op.answers:
            if r.status_code in (404, 405) and not case.routed:
                return None if _is_envelope(r) else "the router's answer is no envelope"
            return f"undocumented status (documented: {sorted(op.answers)})"
        schema = op.answers[status]
        if schema is None:
            return "no schema documented"
        key = (op.method, op.path, status)
        if key not in self.validators:
            self.validators[key] = Draft202012Validator(
                {**_closed(schema), "components": self.components})
        try:
            body = r.json()
        except ValueError:
            return "not JSON"
        error = next(iter(self.validators[key].iter_errors(body)), None)
        return None if error is None else f"{error.json_path}: {error.message[:200]}"


def _is_envelope(r: httpx.Response) -> bool:
    body = r.json()
    return isinstance(body, dict) and isinstance(body.get("message"), str) \
        and isinstance(body.get("errors"), list)


def _path_value(name: str, known: Mapping[str, int]) -> st.SearchStrategy[Any]:
    """Ids of objects that exist (`known`, by parameter name) and of ones that do not. The
    fuzzer's own user is never among them: ids in user paths name the second user."""
    real = known.get(name, 1)
    ids = st.sampled_from([real, real + 1, 0, -1, 2**63, 2**64, 10**30, "abc", "1.5",
                           "%F0%9F"])
    names = st.text(max_size=10) | hostile_strings.filter(lambda s: len(s) < 5000)
    return ids if name.endswith("_id") else names | ids


def cases_for(op: Operation, doc: dict[str, Any], known: Mapping[str, int]) -> list[Case]:
    cases: list[Case] = []
    query_strategies = {name: from_schema(schema, doc) for name, schema in op.query_params}
    body = from_schema(op.body, doc) if op.body else st.none()
    junk_body = st.one_of(hostile, st.binary(max_size=30),
                          st.sampled_from([b"{", b"[]", b"null", b'{"a":1}{', b"\xff\xfe"]))

    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None,
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(path_values=st.fixed_dictionaries({n: _path_value(n, known)
                                              for n in op.path_params}),
           params=st.fixed_dictionaries({}, optional=query_strategies),
           unknown_param=st.sampled_from([None] * 7 + [{"no_such_filter": "x"}]),
           payload=st.one_of(body, body, body, junk_body),
           unknown_key=st.sampled_from([False] * 7 + [True]),
           content_type=st.sampled_from(["application/json", "application/json",
                                         "text/plain", "application/x-www-form-urlencoded",
                                         None]),
           auth=st.sampled_from(["admin"] * 6 + ["none", "bad"]))
    def collect(path_values: dict[str, Any], params: dict[str, Any], unknown_param: Any,
                payload: Any, unknown_key: bool, content_type: str | None, auth: str) -> None:
        path = op.path
        for name, value in path_values.items():
            path = path.replace("{" + name + "}", _quote(value))
        if unknown_key and isinstance(payload, dict):
            payload = dict(payload, not_a_field=1)
        routed = all(type(path_values[name]) is int and path_values[name] >= 0
                     for name in op.int_params)
        cases.append(Case(op, path, dict(params, **(unknown_param or {})),
                          payload if op.body else (payload if unknown_key else None),
                          content_type, auth, routed))

    collect()
    return cases


def _quote(value: Any) -> str:
    """Percent-encoded as a client would send it; lone surrogates as their UTF-8 bytes. Cut
    to URL_TEXT: a longer URL is refused by the HTTP layer (431) before the app sees it."""
    if isinstance(value, bool):
        text = str(value).lower()
    else:
        text = value if isinstance(value, str) else json.dumps(value)
    return quote(text[:URL_TEXT].encode("utf-8", "surrogatepass"), safe="")


def encode(case: Case, token: str) -> dict[str, Any]:
    headers: dict[str, str] = {}
    if case.auth == "admin":
        headers["Authorization"] = f"Bearer {token}"
    elif case.auth == "bad":
        headers["Authorization"] = "Bearer not-a-real-token"
    if case.content_type:
        headers["Content-Type"] = case.content_type
    content: bytes | None = None
    if isinstance(case.body, bytes):
        content = case.body
    elif case.body is not None:
        content = json.dumps(case.body, allow_nan=True).encode("utf-8", "surrogatepass")
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in case.params.items()
                     if v is not None)
    return {"method": case.operation.method.upper(),
            "url": case.path + ("?" + query if query else ""), "headers": headers,
            "content": content}


@pytest.fixture
async def client(ctx: ServiceContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx), client=("203.0.113.7", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test",
                                 timeout=30) as c:
        yield c


async def _setup(ctx: ServiceContext, client: httpx.AsyncClient) -> tuple[str, dict[str, int]]:
    """The fuzzer's admin token, and the ids of a second user and of an offline host."""
    r = await client.post("/api/v1/setup", json={
        "admin": {"admin": True, "email": ADMIN_EMAIL, "name": "Admin", "password": PASSWORD,
                  "password_confirmation": PASSWORD},
        "org_info": {"org_name": "Acme"}, "server_url": "https://fleet.test"})
    assert r.status_code == 200, r.text
    token = str(r.json()["token"])
    r = await client.post("/api/latest/fleet/users/admin", headers={
        "Authorization": f"Bearer {token}"}, json={
        "email": "observer@example.com", "name": "Observer", "password": PASSWORD,
        "global_role": "observer", "admin_forced_password_reset": False})
    assert r.status_code == 200, r.text
    known = {"user_id": r.json()["user"]["id"]}
    secret = (await client.get("/api/latest/fleet/spec/enroll_secret", headers={
        "Authorization": f"Bearer {token}"})).json()["spec"]["secrets"][0]["secret"]
    r = await client.post("/api/osquery/enroll", json={"enroll_secret": secret,
                                                       "host_identifier": "fuzz-host"})
    assert r.status_code == 200, r.text
    # Last seen a day ago: synchronous live queries to it return at once (offline) instead of
    # waiting live_query_rest_period for an answer that never comes.
    [host] = (await client.get("/api/latest/fleet/hosts", headers={
        "Authorization": f"Bearer {token}"})).json()["hosts"]
    await host_store.mark_seen(ctx.db, [host["id"]], utcnow() - dt.timedelta(days=1))
    return token, {**known, "host_id": host["id"]}


async def test_no_rest_request_gets_a_5xx(ctx: ServiceContext,
                                          client: httpx.AsyncClient) -> None:
    token, known = await _setup(ctx, client)
    doc = (await client.get(OPENAPI)).json()
    ops = operations(doc)
    assert len(ops) >= 30, [f"{o.method} {o.path}" for o in ops]
    answers = Answers(doc)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    sent = 0
    for op in ops:
        for case in cases_for(op, doc, known):
            r = await client.request(**encode(case, token))
            sent += 1
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                failures.append(f"{r.status_code} {r.text[:200]} for {case.describe()}")
            elif problem := answers.mismatch(case, r):
                failures.append(f"{r.status_code} not as documented, {problem}: "
                                f"{r.text[:200]} for {case.describe()}")
    print(f"{sent} requests over {len(ops)} operations; statuses {sorted(statuses.items())}")
    assert not failures, f"{len(failures)} of {sent}:\n" + "\n".join(failures[:20])
    assert statuses.get(200, 0) > sent // 20, statuses  # the fuzz did reach the handlers

    # Still serving: log in, save a query, enroll a host and find it (the fuzz may have
    # deleted the first one: an explicit `{}` filter means all hosts).
    r = await client.post("/api/latest/fleet/login",
                          json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.post("/api/latest/fleet/queries", headers=auth,
                          json={"name": "after the fuzz", "query": "SELECT 1"})
    assert r.status_code == 200, r.text
    r = await client.post("/api/latest/fleet/spec/enroll_secret", headers=auth,
                          json={"spec": {"secrets": [{"secret": "after-the-fuzz"}]}})
    assert r.status_code == 200, r.text
    r = await client.post("/api/osquery/enroll", json={"enroll_secret": "after-the-fuzz",
                                                       "host_identifier": "after-the-fuzz"})
    assert r.status_code == 200, r.text
    node_key = r.json()["node_key"]
    r = await client.get("/api/latest/fleet/hosts", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["hosts"], r.text
    r = await client.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert r.status_code == 200, r.text
