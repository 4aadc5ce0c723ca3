"""Setup, sessions and users through the REST API, on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import httpx
import pytest
import sqlalchemy as sa

from fleet.broker import BrokerUnavailable
from fleet.jobs.cleanups import CLEANUPS_THEN_AGGREGATION
from fleet.service.context import ServiceContext
from fleet.store.db import utcnow
from fleet.store.schema import app_config, enroll_secrets, sessions, users
from tests.integration.conftest import ADMIN_EMAIL, PASSWORD, Api, assert_error, build_app

# ---------------------------------------------------------------------------------------------
# Setup


async def test_setup_creates_admin_secret_and_org_once(api: Api) -> None:
    body = await api.setup()
    assert body["admin"]["email"] == ADMIN_EMAIL
    assert body["admin"]["global_role"] == "admin"
    assert body["admin"]["force_password_reset"] is False
    assert body["admin"]["created_at"].endswith("Z")
    assert body["org_info"]["org_name"] == "Acme"
    assert body["server_url"] == "https://fleet.example.com"
    secret = body["osquery_enroll_secret"]
    assert len(secret) == 32 and secret.isalnum()
    async with api.ctx.db.connect() as conn:
        stored = (await conn.execute(sa.select(enroll_secrets))).all()
        config = (await conn.execute(sa.select(app_config.c.json_value))).scalar_one()
    assert [(s.secret, s.team_id) for s in stored] == [(secret, None)]
    assert '"org_name":"Acme"' in config and "https://fleet.example.com" in config

    r = await api.client.get("/api/latest/fleet/me", headers=api.auth(body["token"]))
    assert r.status_code == 200 and r.json()["user"]["email"] == ADMIN_EMAIL

    again = await api.client.post("/api/setup", json={
        "admin": {"email": "second@example.com", "name": "X", "password": PASSWORD},
        "org_info": {"org_name": "Other"}})
    assert_error(again, 409, "Conflict")
    async with api.ctx.db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar() == 1


async def test_setup_validates_input(api: Api) -> None:
    base = {"admin": {"email": "a@example.com", "name": "A", "password": PASSWORD},
            "org_info": {"org_name": "Acme"}}
    weak = {**base, "admin": {**base["admin"], "password": "short"}}
    assert_error(await api.client.post("/api/v1/setup", json=weak), 422, "Validation Failed",
                 "password")
    bad_email = {**base, "admin": {**base["admin"], "email": "nope"}}
    assert_error(await api.client.post("/api/v1/setup", json=bad_email), 422,
                 "Validation Failed", "email")
    mismatch = {**base, "admin": {**base["admin"], "password_confirmation": "other-pass-1!x"}}
    assert_error(await api.client.post("/api/v1/setup", json=mismatch), 422,
                 "Validation Failed", "password_confirmation")
    assert_error(await api.client.post("/api/v1/setup", json={"org_info": {"org_name": "A"}}),
                 422, "Validation Failed", "admin")
    assert (await api.client.post("/api/v1/setup", json=base)).status_code == 200


# ---------------------------------------------------------------------------------------------
# Request parsing


async def test_malformed_json_empty_body_and_wrong_types(admin_api: Api) -> None:
    bad = await admin_api.client.post("/api/v1/fleet/login", content=b"{not json",
                                      headers={"content-type": "application/json"})
    assert_error(bad, 400, "Bad request")
    empty = await admin_api.client.post("/api/v1/fleet/login")
    body = assert_error(empty, 400, "Bad request")
    assert body["errors"][0]["reason"] == "Expected JSON Body"
    no_type = await admin_api.client.post("/api/v1/fleet/login", content=b'{"email": 1}')
    assert_error(no_type, 422, "Validation Failed", "email")
    missing = await admin_api.client.post("/api/v1/fleet/login", json={"email": ADMIN_EMAIL})
    assert_error(missing, 422, "Validation Failed", "password")
    wrong = await admin_api.request("POST", "/users/admin", json={
        "email": "x@example.com", "name": "X", "password": PASSWORD, "api_only": "yes"})
    assert_error(wrong, 422, "Validation Failed", "api_only")
    assert_error(await admin_api.request("GET", "/users/abc"), 404, "Resource Not Found")
    assert_error(await admin_api.request("GET", "/no/such/route"), 404, "Resource Not Found")


# ---------------------------------------------------------------------------------------------
# Sessions


async def test_login_success_and_same_error_for_unknown_email_or_wrong_password(
        admin_api: Api) -> None:
    r = await admin_api.client.post("/api/v1/fleet/login",
                                    json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["email"] == ADMIN_EMAIL and body["available_teams"] == []
    assert len(body["token"]) > 40
    async with admin_api.ctx.db.connect() as conn:
        hashes = (await conn.execute(sa.select(sessions.c.key_hash))).scalars().all()
    assert body["token"] not in hashes and len(hashes) == 2  # setup's + this one, as digests

    wrong = await admin_api.client.post("/api/v1/fleet/login",
                                        json={"email": ADMIN_EMAIL, "password": "wrong-pass-1!"})
    unknown = await admin_api.client.post("/api/v1/fleet/login",
                                          json={"email": "who@example.com", "password": PASSWORD})
    for response in (wrong, unknown):
        err = assert_error(response, 401, "Authentication failed")
        assert err["errors"][0]["reason"] == "Authentication failed"


async def test_login_is_rate_limited_per_email(admin_api: Api) -> None:
    attempt = {"email": ADMIN_EMAIL, "password": "wrong-pass-1!"}
    for _ in range(10):
        r = await admin_api.client.post("/api/v1/fleet/login", json=attempt)
        assert r.status_code == 401
    limited = await admin_api.client.post("/api/v1/fleet/login",
                                          json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert limited.status_code == 429
    wait = int(limited.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert limited.json()["message"] == f"limit exceeded, retry after: {wait}s"
    # Another email has its own bucket.
    other = await admin_api.client.post("/api/v1/fleet/login",
                                        json={"email": "x@example.com", "password": PASSWORD})
    assert other.status_code == 401


async def test_login_refused_while_the_shared_limit_is_unreachable(
        admin_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(*_args: object) -> int:
        raise BrokerUnavailable("redis: connection refused")

    monkeypatch.setattr(admin_api.ctx.broker.limits, "hit", unavailable)
    r = await admin_api.client.post("/api/v1/fleet/login",
                                    json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert_error(r, 503, "Service Unavailable")


async def test_rest_requires_a_valid_token(admin_api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = await admin_api.client.get("/api/v1/fleet/me", headers=headers)
        assert_error(r, 401, "Authentication failed")
    assert_error(await admin_api.client.get("/api/v1/fleet/hosts"), 401, "Authentication failed")


async def test_logout_ends_only_that_session(admin_api: Api) -> None:
    other = await admin_api.login(ADMIN_EMAIL)
    r = await admin_api.request("POST", "/logout", token=other)
    assert r.status_code == 200 and r.json() == {}
    assert_error(await admin_api.request("GET", "/me", token=other), 401,
                 "Authentication failed")
    assert (await admin_api.request("GET", "/me")).status_code == 200


async def test_expired_session_is_refused_and_deleted(admin_api: Api) -> None:
    token = await admin_api.login(ADMIN_EMAIL)
    old = utcnow() - dt.timedelta(seconds=admin_api.ctx.cfg.session.duration + 1)
    async with admin_api.ctx.db.begin() as conn:
        await conn.execute(sa.update(sessions).values(accessed_at=old))
    assert_error(await admin_api.request("GET", "/me", token=token), 401,
                 "Authentication failed")
    async with admin_api.ctx.db.connect() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar()
    assert left == 1  # the admin_token session (also expired) is untouched until used


async def test_leader_cleanup_deletes_expired_sessions_only(
        admin_api: Api) -> None:
    ctx = admin_api.ctx

    async def count_sessions() -> int:
        async with ctx.db.connect() as conn:
            return int((await conn.execute(
                sa.select(sa.func.count()).select_from(sessions))).scalar_one())

    stale = await admin_api.login(ADMIN_EMAIL)
    async with ctx.db.begin() as conn:  # the newest session is the one just opened
        newest = sa.select(sa.func.max(sessions.c.id)).scalar_subquery()
        await conn.execute(sa.update(sessions).where(sessions.c.id == newest)
                           .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    fresh = await admin_api.login(ADMIN_EMAIL)
    api_user = await admin_api.request("POST", "/users/admin", json={
        "email": "bot@example.com", "name": "Bot", "password": PASSWORD, "api_only": True})
    api_token = api_user.json()["token"]
    before = await count_sessions()
    cleanups = dataclasses.replace(CLEANUPS_THEN_AGGREGATION, interval=0.05)
    job = asyncio.create_task(cleanups.run_forever(ctx))
    try:
        for _ in range(200):
            if await count_sessions() < before:
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert await count_sessions() == before - 1
    assert_error(await admin_api.request("GET", "/me", token=stale), 401,
                 "Authentication failed")
    for token in (fresh, api_token, admin_api.admin_token):
        assert (await admin_api.request("GET", "/me", token=token)).status_code == 200


async def test_use_slides_session_expiry_at_most_once_a_minute(admin_api: Api) -> None:
    token = await admin_api.login(ADMIN_EMAIL)
    stale = utcnow() - dt.timedelta(minutes=5)
    async with admin_api.ctx.db.begin() as conn:
        await conn.execute(sa.update(sessions).values(accessed_at=stale))
    assert (await admin_api.request("GET", "/me", token=token)).status_code == 200
    async with admin_api.ctx.db.connect() as conn:
        touched = (await conn.execute(sa.select(sa.func.min(sessions.c.accessed_at)))).scalar()
    assert touched == stale  # the admin session, not used
    before = admin_api.ctx.db.statement_count
    assert (await admin_api.request("GET", "/me", token=token)).status_code == 200
    # Fresh session: a lookup and the user read, no write.
    assert admin_api.ctx.db.statement_count - before == 2


async def test_api_only_user_gets_a_non_expiring_token(admin_api: Api) -> None:
    r = await admin_api.request("POST", "/users/admin", json={
        "email": "bot@example.com", "name": "Bot", "password": PASSWORD, "api_only": True,
        "global_role": "maintainer"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["api_only"] is True and body["user"]["force_password_reset"] is False
    token = body["token"]
    ancient = utcnow() - dt.timedelta(days=365)
    async with admin_api.ctx.db.begin() as conn:
        await conn.execute(sa.update(sessions).values(accessed_at=ancient))
    me = await admin_api.request("GET", "/me", token=token)
    assert me.status_code == 200 and me.json()["user"]["email"] == "bot@example.com"


# ---------------------------------------------------------------------------------------------
# Users


async def test_admin_creates_lists_gets_patches_and_deletes_users(admin_api: Api) -> None:
    created = {}
    for role in ("admin", "maintainer", "observer", "observer_plus"):
        user, _ = await admin_api.user(role, email=f"{role}@corp.example.com")
        assert user["global_role"] == role and user["teams"] == [] and user["enabled"]
        created[role] = user
    default = await admin_api.request("POST", "/users/admin", json={
        "email": "plain@example.com", "name": "Plain", "password": PASSWORD})
    assert default.json()["user"]["global_role"] == "observer"
    # Fleet's default for admin-created users.
    assert default.json()["user"]["force_password_reset"] is True
    assert "token" not in default.json()

    listed = (await admin_api.request("GET", "/users")).json()["users"]
    assert len(listed) == 6
    r = await admin_api.request("GET", "/users", params={
        "query": "observer", "order_key": "email", "order_direction": "desc"})
    assert [u["email"] for u in r.json()["users"]] == [
        "observer_plus@corp.example.com", "observer@corp.example.com"]
    page = await admin_api.request("GET", "/users", params={"page": 1, "per_page": 2,
                                                            "order_key": "id"})
    assert [u["id"] for u in page.json()["users"]] == [u["id"] for u in listed[2:4]]
    assert_error(await admin_api.request("GET", "/users", params={"order_key": "password"}),
                 400, "Bad request", "order_key")

    uid = created["observer"]["id"]
    got = await admin_api.request("GET", f"/users/{uid}")
    assert got.json()["user"]["email"] == "observer@corp.example.com"
    patched = await admin_api.request("PATCH", f"/users/{uid}", json={
        "name": "Olivia", "global_role": "maintainer", "position": "SRE"})
    assert patched.status_code == 200, patched.text
    user = patched.json()["user"]
    assert (user["name"], user["global_role"], user["position"]) == (
        "Olivia", "maintainer", "SRE")

    assert (await admin_api.request("DELETE", f"/users/{uid}")).json() == {}
    assert_error(await admin_api.request("GET", f"/users/{uid}"), 404, "Resource Not Found")
    missing = await admin_api.request("GET", "/users/9999")
    assert missing.json()["errors"][0]["reason"] == (
        "User with id=9999 was not found in the datastore")
    async with admin_api.ctx.db.connect() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(sessions)
                                   .where(sessions.c.user_id == uid))).scalar()
    assert left == 0


async def test_user_validation_and_conflicts(admin_api: Api) -> None:
    def new(**fields: object) -> dict[str, object]:
        return {"email": "n@example.com", "name": "N", "password": PASSWORD, **fields}

    for fields, name in (({"email": "bad"}, "email"), ({"password": "longbutnosymbol1"},
                                                       "password"),
                         ({"password": "short-1"}, "password"), ({"global_role": "root"},
                                                                  "global_role"),
                         ({"name": " "}, "name")):
        r = await admin_api.request("POST", "/users/admin", json=new(**fields))
        assert_error(r, 422, "Validation Failed", name)
    assert (await admin_api.request("POST", "/users/admin", json=new())).status_code == 200
    dup = await admin_api.request("POST", "/users/admin", json=new(email="N@example.com"))
    assert_error(dup, 409, "Resource Already Exists", "email")

    me = (await admin_api.request("GET", "/me")).json()["user"]
    assert_error(await admin_api.request("DELETE", f"/users/{me['id']}"), 422,
                 "Validation Failed")
    demote = await admin_api.request("PATCH", f"/users/{me['id']}",
                                     json={"global_role": "observer"})
    assert_error(demote, 422, "Validation Failed", "global_role")


async def test_non_admins_manage_only_themselves(admin_api: Api) -> None:
    maint, token = await admin_api.user("maintainer")
    obs, _ = await admin_api.user("observer")
    assert_error(await admin_api.request("GET", "/users", token=token), 403, "Permission Denied")
    assert_error(await admin_api.request("GET", f"/users/{obs['id']}", token=token), 403,
                 "Permission Denied")
    create = await admin_api.request("POST", "/users/admin", token=token, json={
        "email": "z@example.com", "name": "Z", "password": PASSWORD})
    assert_error(create, 403, "Permission Denied")
    promote = await admin_api.request("PATCH", f"/users/{maint['id']}", token=token,
                                      json={"global_role": "admin"})
    assert_error(promote, 403, "Permission Denied")

    own = await admin_api.request("PATCH", f"/users/{maint['id']}", token=token,
                                  json={"name": "Mae", "position": "Ops"})
    assert own.status_code == 200 and own.json()["user"]["name"] == "Mae"
    no_current = await admin_api.request("PATCH", f"/users/{maint['id']}", token=token,
                                         json={"new_password": "another-pass-2?"})
    assert_error(no_current, 422, "Validation Failed", "password")
    wrong_current = await admin_api.request("PATCH", f"/users/{maint['id']}", token=token, json={
        "new_password": "another-pass-2?", "password": "not-it-at-all-1!"})
    assert_error(wrong_current, 422, "Validation Failed", "password")

    other_session = await admin_api.login(maint["email"])
    changed = await admin_api.request("PATCH", f"/users/{maint['id']}", token=token, json={
        "new_password": "another-pass-2?", "password": PASSWORD,
        "email": "mae@example.com"})
    assert changed.status_code == 200 and changed.json()["user"]["email"] == "mae@example.com"
    # The new password logged out every other session, but not the one that changed it.
    assert (await admin_api.request("GET", "/me", token=token)).status_code == 200
    assert_error(await admin_api.request("GET", "/me", token=other_session), 401,
                 "Authentication failed")
    assert await admin_api.login("mae@example.com", "another-pass-2?")


async def test_unexpected_errors_are_opaque_500_envelopes(ctx: ServiceContext) -> None:
    app = build_app(ctx)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        r = await client.get("/boom")
    body = assert_error(r, 500, "Internal Server Error")
    assert "secret internals" not in r.text and body["uuid"]


async def test_forced_password_reset_blocks_everything_until_done(admin_api: Api) -> None:
    user, token = await admin_api.user("maintainer", admin_forced_password_reset=True)
    assert user["force_password_reset"] is True
    # Only /me, logout and the reset itself are open.
    assert_error(await admin_api.request("GET", "/hosts", token=token), 403,
                 "Permission Denied")
    me = await admin_api.request("GET", "/me", token=token)
    assert me.status_code == 200 and me.json()["user"]["force_password_reset"] is True
    reset = "/perform_required_password_reset"
    assert_error(await admin_api.request("POST", reset, token=token,
                                         json={"new_password": PASSWORD}), 422,
                 "Validation Failed", name="new_password")  # the old password again
    assert_error(await admin_api.request("POST", reset, token=token,
                                         json={"new_password": "short"}), 422,
                 "Validation Failed", name="new_password")
    new_password = "N3w-Password-of-mine!"
    r = await admin_api.request("POST", reset, token=token, json={"new_password": new_password})
    assert r.status_code == 200 and r.json()["user"]["force_password_reset"] is False
    assert (await admin_api.request("GET", "/hosts", token=token)).status_code == 200
    assert_error(await admin_api.request("POST", reset, token=token,
                                         json={"new_password": "An0ther-Password!"}), 400,
                 "Bad request")
    await admin_api.login(user["email"], new_password)


async def test_admin_requires_reset_and_logs_the_user_out(admin_api: Api) -> None:
    user, token = await admin_api.user("observer")
    _, other = await admin_api.user("maintainer")
    path = f"/users/{user['id']}/require_password_reset"
    assert_error(await admin_api.request("POST", path, token=other, json={"require": True}),
                 403, "Permission Denied")
    r = await admin_api.request("POST", path, json={"require": True})
    assert r.status_code == 200 and r.json()["user"]["force_password_reset"] is True
    assert_error(await admin_api.request("GET", "/me", token=token), 401,
                 "Authentication failed")
    fresh = await admin_api.login(user["email"])
    assert_error(await admin_api.request("GET", "/queries", token=fresh), 403,
                 "Permission Denied")
    r = await admin_api.request("POST", path, json={"require": False})
    assert r.status_code == 200 and r.json()["user"]["force_password_reset"] is False
    assert (await admin_api.request("GET", "/queries", token=fresh)).status_code == 200
    assert_error(await admin_api.request("POST", "/users/999999/require_password_reset",
                                         json={"require": True}), 404, "Resource Not Found")


async def test_version_needs_authentication(admin_api: Api) -> None:
    r = await admin_api.request("GET", "/version")
    assert r.status_code == 200 and set(r.json()) >= {"version", "branch", "revision"}
    r = await admin_api.client.get("/api/v1/fleet/version")
    assert r.status_code == 401
