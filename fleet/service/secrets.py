"""Global enroll secrets: read and replace (fleetctl `kind: enroll_secret`), and the secret that
setup and packaging need to exist.

Hosts already enrolled keep working after their secret is removed: they authenticate with
their node key from then on.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import GLOBAL, Action, Viewer, authorize
from fleet.core.errors import Conflict, ValidationFailed
from fleet.core.secrets import EnrollSecret
from fleet.service.context import ServiceContext
from fleet.store import secrets as store
from fleet.store.db import utcnow

MAX_SECRETS = 50
# Alphanumeric plus the characters of base64/URL-safe tokens, which people paste as secrets.
_SECRET_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,255}")
_ALPHABET = string.ascii_letters + string.digits


def random_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(32))


def _validate(values: Sequence[str]) -> None:
    if len(values) > MAX_SECRETS:
        raise ValidationFailed(f"at most {MAX_SECRETS} enroll secrets are allowed",
                               name="secrets")
    for value in values:
        if not _SECRET_RE.fullmatch(value):
            raise ValidationFailed("enroll secrets must be 1-255 letters, digits or ._~+/=-",
                                   name="secret")
    if len(set(values)) != len(values):
        raise ValidationFailed("duplicate enroll secret", name="secret")


async def _add_global(conn: AsyncConnection, values: Sequence[str]) -> None:
    taken = await store.team_secrets_among(conn, values)
    if taken:
        raise Conflict(f"enroll secret already used by a team: {taken[0]}", name="secret")
    await store.add_global_secrets(conn, values, utcnow())


async def get_global_secrets(ctx: ServiceContext, viewer: Viewer) -> Sequence[EnrollSecret]:
    authorize(viewer, Action.READ_SECRETS, GLOBAL)
    async with ctx.db.connect() as conn:
        return await store.list_global_secrets(conn)


async def apply_global_secrets(ctx: ServiceContext, viewer: Viewer,
                               values: Sequence[str]) -> None:
    """Make `values` the complete set of global secrets (an empty list removes them all)."""
    authorize(viewer, Action.WRITE_SECRETS, GLOBAL)
    _validate(values)
    async with ctx.db.begin() as conn:
        await store.delete_global_secrets_except(conn, values)
        await _add_global(conn, values)


async def ensure_global_secret_in(conn: AsyncConnection, secret: str | None = None) -> str:
    """`ensure_global_secret` inside the caller's transaction."""
    if secret is None:
        existing = await store.list_global_secrets(conn)
        if existing:
            return existing[0].secret
        secret = random_secret()
    _validate([secret])
    await _add_global(conn, [secret])
    return secret


async def ensure_global_secret(ctx: ServiceContext, secret: str | None = None) -> str:
    """Internal (no viewer; not for transports): with `secret`, make sure it is a global
    enroll secret; without, return the oldest global secret, creating a random one if none."""
    async with ctx.db.begin() as conn:
        return await ensure_global_secret_in(conn, secret)
