"""Users: created by admins (or by setup), read by admins or themselves, changed, deleted.

Rules from Fleet: emails are unique (case-insensitively), passwords need 12+ characters with a
number and a symbol, changing your own email or password needs your current password, and
the last admin can be neither demoted nor deleted.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.config import Config
from fleet.core.authz import (
    GLOBAL,
    Action,
    Role,
    Subject,
    Viewer,
    authorize,
    authorize_any,
)
from fleet.core.errors import BadRequest, NotFound, ValidationFailed
from fleet.core.users import User
from fleet.service import sessions
from fleet.service.context import ServiceContext
from fleet.store import sessions as session_store
from fleet.store import users as store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions

_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PASSWORD_POLICY = ("Password does not meet required criteria: Must include 12 characters, "
                   "at least 1 number (e.g. 0 - 9), and at least 1 symbol (e.g. &*#).")


@dataclass(frozen=True)
class NewUser:
    email: str
    name: str
    password: str | None  # may be omitted only for SSO users
    global_role: Role = Role.OBSERVER
    api_only: bool = False
    force_password_reset: bool = False
    sso_enabled: bool = False
    position: str = ""


@dataclass(frozen=True)
class UserChanges:
    """Fields to change; None leaves a field as it is."""

    name: str | None = None
    email: str | None = None
    position: str | None = None
    global_role: Role | None = None
    new_password: str | None = None
    password: str | None = None  # the viewer's current one, to change their own email/password


def validate_email(email: str, field: str = "email") -> None:
    if not _EMAIL_RE.fullmatch(email) or len(email) > 255:
        raise ValidationFailed("Invalid email address", name=field)


def validate_password(password: str, field: str = "password") -> None:
    """Fleet's policy; 48 characters at most (and within bcrypt's 72 bytes)."""
    number = any(ch.isdigit() for ch in password)
    symbol = any(unicodedata.category(ch)[0] in "PS" for ch in password)
    if not (12 <= len(password) <= 48 and len(password.encode()) <= sessions.BCRYPT_MAX_BYTES
            and number and symbol):
        raise ValidationFailed(PASSWORD_POLICY, name=field)


def _validate_name(name: str) -> None:
    if not name.strip():
        raise ValidationFailed("Name cannot be empty", name="name")


async def new_user_values(cfg: Config, new: NewUser) -> dict[str, Any]:
    """Validated row values (password hashed) for a new user; shared with setup."""
    validate_email(new.email)
    _validate_name(new.name)
    if new.password is None:
        if not new.sso_enabled:
            raise ValidationFailed("Password is required", name="password")
        password = secrets.token_urlsafe(24) + "!1"  # unusable: SSO users never type one
    else:
        validate_password(new.password)
        password = new.password
    now = utcnow()
    return {"created_at": now, "updated_at": now, "name": new.name, "email": new.email,
            "password": await sessions.hash_password(cfg, password),
            "global_role": new.global_role.value, "api_only": new.api_only, "enabled": True,
            "force_password_reset": new.force_password_reset, "sso_enabled": new.sso_enabled,
            "position": new.position}


async def insert_new_user(cfg: Config, conn: AsyncConnection,
                          values: dict[str, Any], *, api_only: bool) -> tuple[int, str | None]:
    """Insert a validated user in the caller's transaction; a token if API-only.
    AlreadyExists if the email is taken."""
    user_id = await store.insert_user(conn, values)
    token = await sessions.create_session(cfg, conn, user_id, api_only=True) if api_only else None
    return user_id, token


async def create_user(ctx: ServiceContext, viewer: Viewer,
                      new: NewUser) -> tuple[User, str | None]:
    """Admin-created user: (user, token), the token only for API-only users."""
    authorize(viewer, Action.WRITE_USERS, GLOBAL)
    values = await new_user_values(ctx.cfg, new)
    async with ctx.db.begin() as conn:
        user_id, token = await insert_new_user(ctx.cfg, conn, values, api_only=new.api_only)
        return await _existing(conn, user_id), token



async def _existing(conn: AsyncConnection, user_id: int) -> User:
    user = await store.get_user(conn, user_id)
    if user is None:
        raise NotFound.of(f"User with id={user_id}")
    return user


async def _password_hash(conn: AsyncConnection, user_id: int) -> bytes:
    hashed = await store.password_hash(conn, user_id)
    if hashed is None:
        raise NotFound.of(f"User with id={user_id}")
    return hashed


async def get_user(ctx: ServiceContext, viewer: Viewer, user_id: int) -> User:
    authorize(viewer, Action.READ_USERS, Subject(owner_id=user_id))
    async with ctx.db.connect() as conn:
        return await _existing(conn, user_id)


async def list_users(ctx: ServiceContext, viewer: Viewer,
                     opts: ListOptions) -> Sequence[User]:
    teams = authorize_any(viewer, Action.READ_USERS)
    async with ctx.db.connect() as conn:
        return await store.list_users(conn, opts, teams=teams)


async def modify_user(ctx: ServiceContext, viewer: Viewer, user_id: int,
                      changes: UserChanges) -> User:
    authorize(viewer, Action.WRITE_USERS, Subject(owner_id=user_id))
    if changes.global_role is not None:
        authorize(viewer, Action.WRITE_USERS, GLOBAL, "only admins can change roles")
    if changes.name is not None:
        _validate_name(changes.name)
    if changes.email is not None:
        validate_email(changes.email)
    if changes.new_password is not None:
        validate_password(changes.new_password, "new_password")
    async with ctx.db.connect() as conn:
        current = await _existing(conn, user_id)
        email_changes = changes.email is not None and changes.email != current.email
        needs_password = viewer.user_id == user_id and (
            email_changes or changes.new_password is not None)
        hashed = await _password_hash(conn, user_id) if needs_password else None
    values: dict[str, Any] = {k: v for k, v in (("name", changes.name),
                                                ("position", changes.position)) if v is not None}
    if hashed is not None:
        await _check_current_password(changes.password, hashed)
    if email_changes:
        values["email"] = changes.email
    if changes.new_password is not None:
        values["password"] = await sessions.hash_password(ctx.cfg, changes.new_password)
    if changes.global_role is not None:
        values["global_role"] = changes.global_role.value
    async with ctx.db.begin() as conn:
        if current.global_role == Role.ADMIN and values.get("global_role", "admin") != "admin":
            await _ensure_another_admin(conn)
        if values:  # AlreadyExists if the new email is taken
            await store.update_user(conn, user_id, {**values, "updated_at": utcnow()})
        if "password" in values:  # a new password logs out every other session
            keep = viewer.session_id if viewer.user_id == user_id else None
            await session_store.delete_user_sessions(conn, user_id, keep=keep)
        return await _existing(conn, user_id)


async def _check_current_password(given: str | None, hashed: bytes) -> None:
    if not given:
        raise ValidationFailed("Current password is required", name="password")
    if not await sessions.verify_password(given, hashed):
        raise ValidationFailed("Current password is incorrect", name="password")


async def _ensure_another_admin(conn: AsyncConnection) -> None:
    if await store.count_admins(conn) <= 1:
        raise ValidationFailed("cannot remove the last admin", name="global_role")


async def delete_user(ctx: ServiceContext, viewer: Viewer, user_id: int) -> None:
    """Delete a user and end all their sessions. Admins cannot delete themselves."""
    authorize(viewer, Action.WRITE_USERS, GLOBAL)
    if user_id == viewer.user_id:
        raise ValidationFailed("cannot delete yourself", name="id")
    async with ctx.db.begin() as conn:
        await session_store.delete_user_sessions(conn, user_id)
        if not await store.delete_user(conn, user_id):
            raise NotFound.of(f"User with id={user_id}")


async def perform_required_password_reset(ctx: ServiceContext, viewer: Viewer,
                                          new_password: str) -> User:
    """Set the new password an admin required; the current session stays logged in."""
    if not viewer.must_reset_password:
        raise BadRequest("user does not require password reset")
    validate_password(new_password, "new_password")
    async with ctx.db.connect() as conn:
        hashed = await _password_hash(conn, viewer.user_id)
    if await sessions.verify_password(new_password, hashed):
        raise ValidationFailed("cannot reuse old password", name="new_password")
    hashed = await sessions.hash_password(ctx.cfg, new_password)
    async with ctx.db.begin() as conn:
        await store.update_user(conn, viewer.user_id, {
            "password": hashed, "force_password_reset": False, "updated_at": utcnow()})
        await session_store.delete_user_sessions(conn, viewer.user_id, keep=viewer.session_id)
        return await _existing(conn, viewer.user_id)


async def require_password_reset(ctx: ServiceContext, viewer: Viewer, user_id: int,
                                 require: bool) -> User:
    """Admins flag (or unflag) a user; flagging logs them out everywhere."""
    authorize(viewer, Action.WRITE_USERS, GLOBAL)
    async with ctx.db.begin() as conn:
        user = await _existing(conn, user_id)
        if require and user.api_only:
            raise ValidationFailed("API-only users cannot be required to reset their password",
                                   name="require")
        await store.update_user(conn, user_id, {"force_password_reset": require,
                                                "updated_at": utcnow()})
        if require:
            await session_store.delete_user_sessions(conn, user_id)
        return await _existing(conn, user_id)
