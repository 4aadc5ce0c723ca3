"""Test data made the way the product makes it: through the store and service functions,
never hand-written rows, so a new column, default or side effect (the "All Hosts"
membership of an enrolled host) reaches every test that makes that kind of object.

Each factory takes the `ServiceContext` under test and keyword overrides, and fills in
unique values (names, emails, node keys) for everything else.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

from fleet.core.authz import Role, Viewer
from fleet.service import users as user_service
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import hosts as host_store
from fleet.store import labels as label_store
from fleet.store import queries as query_store
from fleet.store import secrets as secret_store
from fleet.store.db import utcnow

PASSWORD = "correct-horse-1!"
_serial = itertools.count(1)


async def host(ctx: ServiceContext, *, seen: dt.datetime | None = None,
               created: dt.datetime | None = None, **fields: Any) -> CachedHost:
    """An enrolled host (`store.hosts.enroll`, so it is in "All Hosts"). `fields` are host
    columns; `created` backdates its creation and enrollment; `seen` records a check-in
    (without one, a host's seen time is its creation)."""
    n = next(_serial)
    values = {"hostname": f"host-{n}", "uuid": f"uuid-{n}", "hardware_serial": f"SER{n}",
              "platform": "ubuntu", "distributed_interval": 10, "config_tls_refresh": 60,
              **fields}
    node_key = values.pop("node_key", f"nk-{n}")
    enrolled = await host_store.enroll(
        ctx.db, osquery_host_id=values.pop("osquery_host_id", f"osq-{n}"), node_key=node_key,
        team_id=values.pop("team_id", None), cooldown_seconds=0,
        values=host_store.clip(values))
    if created is not None:
        async with ctx.db.begin() as conn:
            await host_store.update_host(conn, enrolled.host_id,
                                         {"created_at": created, "last_enrolled_at": created})
    if seen is not None:
        await host_store.mark_seen(ctx.db, [enrolled.host_id], seen)
    async with ctx.db.connect() as conn:
        row = await host_store.find_by_node_key(conn, node_key)
    assert row is not None
    return CachedHost.from_row(row)


async def user(ctx: ServiceContext, role: Role = Role.OBSERVER, *, email: str | None = None,
               name: str | None = None, password: str = PASSWORD) -> Viewer:
    """A user with `role`, as setup or an admin creates one (validated, password hashed)."""
    new = user_service.NewUser(email=email or f"{role.value}{next(_serial)}@example.com",
                               name=name or role.value.title(), password=password,
                               global_role=role)
    values = await user_service.new_user_values(ctx.cfg, new)
    async with ctx.db.begin() as conn:
        user_id, _ = await user_service.insert_new_user(ctx.cfg, conn, values, api_only=False)
    return Viewer(user_id=user_id, email=new.email, name=new.name, global_role=role)


async def query(ctx: ServiceContext, *, author: Viewer | None = None, **fields: Any) -> int:
    """A saved global query; `fields` are query columns (name, query, schedule_interval, ...)."""
    now = utcnow()
    values = {"name": f"query-{next(_serial)}", "description": "", "query": "SELECT 1",
              "created_at": now, "updated_at": now, "saved": True,
              "author_id": author.user_id if author else None, **fields}
    async with ctx.db.begin() as conn:
        return await query_store.insert_query(conn, values)


async def enroll_secret(ctx: ServiceContext, secret: str | None = None) -> str:
    """A global enroll secret."""
    secret = secret or f"secret-{next(_serial)}"
    async with ctx.db.begin() as conn:
        await secret_store.add_global_secrets(conn, [secret], utcnow())
    return secret


async def label(ctx: ServiceContext, name: str | None = None, host_ids: Sequence[int] = (),
                **fields: Any) -> int:
    """A label (manual unless `fields` say otherwise) holding `host_ids`; `fields` are label
    columns."""
    now = utcnow()
    values = {"name": name or f"label-{next(_serial)}", "description": "", "query": "SELECT 1",
              "platform": "", "label_type": "regular", "label_membership_type": "manual",
              "created_at": now, "updated_at": now, **fields}
    async with ctx.db.begin() as conn:
        label_id = await label_store.insert_label(conn, values)
        await label_store.set_label_hosts(conn, label_id, host_ids, now)
    return label_id
