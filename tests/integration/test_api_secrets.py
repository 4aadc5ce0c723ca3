"""Global enroll secrets through the REST API (fleetctl `kind: enroll_secret`)."""

from __future__ import annotations

import sqlalchemy as sa

from fleet.service.secrets import ensure_global_secret
from fleet.store.db import utcnow
from fleet.store.schema import enroll_secrets
from fleet.store.secrets import find_secret
from tests.integration.conftest import Api, assert_error


async def secret_values(api: Api, token: str | None = None) -> list[str]:
    r = await api.request("GET", "/spec/enroll_secret", token=token)
    assert r.status_code == 200, r.text
    return [s["secret"] for s in r.json()["spec"]["secrets"]]


async def apply(api: Api, values: list[str], token: str | None = None) -> int:
    r = await api.request("POST", "/spec/enroll_secret", token=token,
                          json={"spec": {"secrets": [{"secret": v} for v in values]}})
    return r.status_code


async def test_setup_secret_is_listed_with_fleet_fields(admin_api: Api) -> None:
    r = await admin_api.request("GET", "/spec/enroll_secret")
    [secret] = r.json()["spec"]["secrets"]
    assert set(secret) == {"secret", "created_at", "team_id"}
    assert secret["team_id"] is None and secret["created_at"].endswith("Z")
    async with admin_api.ctx.db.connect() as conn:
        row = await find_secret(conn, secret["secret"])
        assert row is not None and row.team_id is None
        assert await find_secret(conn, "unknown") is None


async def test_apply_replaces_all_global_secrets(admin_api: Api) -> None:
    [original] = await secret_values(admin_api)
    async with admin_api.ctx.db.connect() as conn:
        created = (await conn.execute(sa.select(enroll_secrets.c.created_at))).scalar()
    assert await apply(admin_api, ["abc123", original]) == 200
    assert sorted(await secret_values(admin_api)) == sorted(["abc123", original])
    async with admin_api.ctx.db.connect() as conn:
        kept = (await conn.execute(sa.select(enroll_secrets.c.created_at).where(
            enroll_secrets.c.secret == original))).scalar()
    assert kept == created  # unchanged secrets keep their creation time
    assert await apply(admin_api, ["xyz789"]) == 200
    assert await secret_values(admin_api) == ["xyz789"]
    async with admin_api.ctx.db.connect() as conn:
        assert await find_secret(conn, original) is None
    assert await apply(admin_api, []) == 200
    assert await secret_values(admin_api) == []


async def test_apply_validation_and_permissions(admin_api: Api) -> None:
    before = await secret_values(admin_api)
    for values in (["has space"], [""], ["dup", "dup"], [f"s{i}" for i in range(51)]):
        r = await admin_api.request("POST", "/spec/enroll_secret",
                                    json={"spec": {"secrets": [{"secret": v} for v in values]}})
        assert_error(r, 422, "Validation Failed")
    assert_error(await admin_api.request("POST", "/spec/enroll_secret", json={"spec": {}}), 422,
                 "Validation Failed", "secrets")
    assert await secret_values(admin_api) == before

    async with admin_api.ctx.db.begin() as conn:
        await conn.execute(sa.insert(enroll_secrets).values(secret="teamsecret", team_id=7,
                                                            created_at=utcnow()))
    r = await admin_api.request("POST", "/spec/enroll_secret",
                                json={"spec": {"secrets": [{"secret": "teamsecret"}]}})
    assert_error(r, 409, "Conflict")
    assert await secret_values(admin_api) == before  # rolled back as a whole

    _, observer = await admin_api.user("observer")
    _, maintainer = await admin_api.user("maintainer")
    assert_error(await admin_api.request("GET", "/spec/enroll_secret", token=observer), 403,
                 "Permission Denied")
    assert await apply(admin_api, ["fromobserver"], token=observer) == 403
    assert await apply(admin_api, ["frommaintainer"], token=maintainer) == 200
    assert await secret_values(admin_api, token=maintainer) == ["frommaintainer"]


async def test_ensure_global_secret(admin_api: Api) -> None:
    ctx = admin_api.ctx
    [existing] = await secret_values(admin_api)
    assert await ensure_global_secret(ctx) == existing
    assert await ensure_global_secret(ctx, "packaging1") == "packaging1"
    assert await ensure_global_secret(ctx, "packaging1") == "packaging1"
    assert sorted(await secret_values(admin_api)) == sorted([existing, "packaging1"])
    assert await apply(admin_api, []) == 200
    fresh = await ensure_global_secret(ctx)
    assert len(fresh) == 32 and fresh.isalnum()
    assert await secret_values(admin_api) == [fresh]
