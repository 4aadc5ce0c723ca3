"""Store errors are translated where the key is known (code review W14): a duplicate key is
`AlreadyExists` naming the field, decided by error code on both backends; any other
constraint (a missing foreign key) stays a database error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.errors import AlreadyExists
from fleet.service.context import ServiceContext
from fleet.store import queries as query_store
from fleet.store import sessions as session_store
from fleet.store import users as user_store
from fleet.store.db import duplicate_raises, utcnow
from fleet.store.schema import users
from tests.integration.conftest import Api, assert_error


def _query(name: str) -> dict[str, object]:
    now = utcnow()
    return {"name": name, "description": "", "query": "SELECT 1", "created_at": now,
            "updated_at": now, "saved": True, "interval": 60, "logging": "snapshot"}


async def test_duplicate_query_names_raise_already_exists_from_the_store(
        ctx: ServiceContext) -> None:
    async with ctx.db.begin() as conn:
        first = await query_store.insert_query(conn, _query("uptime"))
        other = await query_store.insert_query(conn, _query("other"))
    attempts: list[Callable[[AsyncConnection], Awaitable[object]]] = [
        lambda conn: query_store.insert_query(conn, _query("uptime")),
        lambda conn: query_store.update_query(conn, other, {"name": "uptime"})]
    for attempt in attempts:
        with pytest.raises(AlreadyExists) as raised:
            async with ctx.db.begin() as conn:
                await attempt(conn)
        assert (raised.value.status, raised.value.name) == (409, "name")
        assert raised.value.reason == "a query named 'uptime' already exists"
    async with ctx.db.connect() as conn:
        kept = await query_store.get_query(conn, first)
    assert kept is not None and (kept.interval, kept.logging) == (60, "snapshot")


async def test_only_duplicate_keys_are_translated(ctx: ServiceContext) -> None:
    now = utcnow()
    row = {"email": "a@example.com", "name": "A", "password": b"x", "created_at": now,
           "updated_at": now}
    async with ctx.db.begin() as conn:
        await conn.execute(sa.insert(users).values(**row))
    with pytest.raises(AlreadyExists, match="taken"):  # the unique index, past any check
        async with ctx.db.begin() as conn:
            with duplicate_raises(AlreadyExists("taken")):
                await conn.execute(sa.insert(users).values(**row))
    with pytest.raises(IntegrityError):  # a session for no user: not a duplicate
        async with ctx.db.begin() as conn:
            with duplicate_raises(AlreadyExists("taken")):
                await session_store.insert_session(conn, user_id=999, key_hash="h", now=now,
                                                   expires_at=now)


async def test_user_emails_clash_case_insensitively_on_both_backends(
        ctx: ServiceContext) -> None:
    now = utcnow()
    values = {"email": "b@example.com", "name": "B", "password": b"x", "created_at": now,
              "updated_at": now}
    async with ctx.db.begin() as conn:
        await user_store.insert_user(conn, values)
        second = await user_store.insert_user(conn, {**values, "email": "c@example.com"})
    for email in ("b@example.com", "B@Example.com"):
        with pytest.raises(AlreadyExists) as raised:
            async with ctx.db.begin() as conn:
                await user_store.update_user(conn, second, {"email": email})
        assert raised.value.name == "email"


async def test_rest_conflicts_keep_fleets_answer(admin_api: Api) -> None:
    for name in ("a", "b"):
        r = await admin_api.request("POST", "/queries", json={"name": name, "query": "SELECT 1"})
        assert r.status_code == 200, r.text
    b = (await admin_api.request("GET", "/queries", params={"query": "b"})).json()["queries"][0]
    r = await admin_api.request("PATCH", f"/queries/{b['id']}", json={"name": "a"})
    body = assert_error(r, 409, "Resource Already Exists", "name")
    assert body["errors"][0]["reason"] == "a query named 'a' already exists"
