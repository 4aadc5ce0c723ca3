"""First-run setup and the app config document it seeds (`org_info`, `server_settings`).

Setup is the only unauthenticated way to create a user: it works while the users table is
empty and answers 409 "setup already completed" afterwards. The first admin, their session,
the global enroll secret and the org settings are written in one transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fleet.core.authz import Role
from fleet.core.errors import Conflict, ValidationFailed
from fleet.core.users import User
from fleet.service import secrets, sessions, users
from fleet.service.context import ServiceContext
from fleet.store import app_config as store
from fleet.store import users as user_store


@dataclass(frozen=True)
class SetupResult:
    admin: User
    org_info: dict[str, Any]
    server_url: str
    enroll_secret: str
    token: str


async def setup_required(ctx: ServiceContext) -> bool:
    """True until the first user exists."""
    async with ctx.db.connect() as conn:
        return not await user_store.any_user(conn)


def _validate_server_url(url: str) -> None:
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ValidationFailed("server_url must be an http(s) URL", name="server_url")


async def setup(ctx: ServiceContext, admin: users.NewUser, *, org_name: str,
                server_url: str) -> SetupResult:
    """Create the first admin and the org settings; Conflict once setup has been done."""
    if not await setup_required(ctx):  # cheap check first: no bcrypt work for late callers
        raise Conflict("setup already completed")
    if not org_name.strip():
        raise ValidationFailed("organization name must be present", name="org_name")
    _validate_server_url(server_url)
    values = await users.new_user_values(
        ctx.cfg, dataclasses.replace(admin, global_role=Role.ADMIN, api_only=False))
    async with ctx.db.begin() as conn:
        if await user_store.any_user(conn):
            raise Conflict("setup already completed")
        user_id, _ = await users.insert_new_user(ctx.cfg, conn, values, api_only=False)
        token = await sessions.create_session(ctx.cfg, conn, user_id, api_only=False)
        secret = await secrets.ensure_global_secret_in(conn)
        config = await store.get_app_config(conn)
        org_info = {"org_logo_url": "", **config.get("org_info", {}), "org_name": org_name}
        config["org_info"] = org_info
        config["server_settings"] = {**config.get("server_settings", {}),
                                     "server_url": server_url}
        await store.save_app_config(conn, config)
        admin_user = await user_store.get_user(conn, user_id)
    assert admin_user is not None  # inserted above, in this transaction
    await ctx.agent_config_changed()  # the app config agents are configured from
    return SetupResult(admin=admin_user, org_info=org_info, server_url=server_url,
                       enroll_secret=secret, token=token)
