"""Credentials and sessions: password hashing, login (rate limited), token authentication,
logout.

Tokens are random (`session.key_size` bytes, URL-safe base64) and stored only as SHA-256
digests. A session slides: each use pushes its expiry to `accessed_at + session.duration`,
but `accessed_at` is written at most once a minute so authenticated reads cost no writes.
API-only users' sessions never expire (Fleet's rule for API tokens).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets

import bcrypt
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.broker import BrokerUnavailable
from fleet.config import Config
from fleet.core.authz import Viewer
from fleet.core.errors import AuthenticationFailed, RateLimited, ServiceUnavailable
from fleet.core.users import User
from fleet.service.context import ServiceContext
from fleet.store import sessions as session_store
from fleet.store import users as user_store
from fleet.store.db import utcnow

log = logging.getLogger("fleet.sessions")

ACCESS_WRITE_INTERVAL = dt.timedelta(minutes=1)
# Far-future expiry recorded for sessions that never expire (fits MySQL DATETIME).
NEVER = dt.datetime(9999, 12, 31)
BCRYPT_MAX_BYTES = 72
_FAILED = "Authentication failed"
PASSWORD_RESET_REQUIRED = "password reset required"

# ----------------------------------------------------------------------------------------------
# Passwords


async def hash_password(cfg: Config, password: str) -> bytes:
    """bcrypt at `auth.bcrypt_cost`, off the event loop (it takes ~0.25 s at cost 12)."""
    salt = bcrypt.gensalt(cfg.auth.bcrypt_cost)
    return await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)


async def verify_password(password: str, hashed: bytes) -> bool:
    encoded = password.encode()
    if len(encoded) > BCRYPT_MAX_BYTES:  # never accepted as a password, and bcrypt refuses it
        return False
    return await asyncio.to_thread(bcrypt.checkpw, encoded, hashed)


_dummy_hash: bytes | None = None


async def _burn_password_check(cfg: Config, password: str) -> None:
    """Spend a bcrypt check on unknown emails too, so timing does not reveal which exist."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await hash_password(cfg, secrets.token_hex(16))
    await verify_password(password, _dummy_hash)


# ----------------------------------------------------------------------------------------------
# Rate limiting

# Fleet's login limit: 10 attempts a minute, 9 more in a row, per email and client IP.
LOGIN_PER_MINUTE = 10
LOGIN_BURST = 9


async def _count_login_attempt(ctx: ServiceContext, email: str, client_ip: str) -> None:
    """One attempt against the email+IP budget, shared by every instance through the broker."""
    try:
        wait = await ctx.broker.limits.hit(f"login:{email.lower()}|{client_ip}",
                                           LOGIN_PER_MINUTE, LOGIN_BURST)
    except BrokerUnavailable as exc:
        # Without the shared budget, brute force would go uncounted: refuse instead.
        raise ServiceUnavailable(f"login rate limit unavailable: {exc}") from None
    if wait:
        raise RateLimited(f"limit exceeded, retry after: {wait}s", retry_after=wait)


# ----------------------------------------------------------------------------------------------
# Sessions


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expiry(cfg: Config, now: dt.datetime, *, api_only: bool) -> dt.datetime:
    return NEVER if api_only else now + dt.timedelta(seconds=cfg.session.duration)


async def create_session(cfg: Config, conn: AsyncConnection, user_id: int, *,
                         api_only: bool) -> str:
    """A new session for the user, inside the caller's transaction; returns the token."""
    token = secrets.token_urlsafe(cfg.session.key_size)
    now = utcnow()
    await session_store.insert_session(conn, user_id=user_id, key_hash=_digest(token), now=now,
                                       expires_at=_expiry(cfg, now, api_only=api_only))
    return token


async def login(ctx: ServiceContext, email: str, password: str, *,
                client_ip: str) -> tuple[User, str]:
    """Check the credentials and open a session: (user, token). The same error for an
    unknown email and a wrong password; every attempt counts against the email+IP bucket."""
    try:
        await _count_login_attempt(ctx, email, client_ip)
    except RateLimited:
        _log_failed_login(email, client_ip, "too many attempts")
        raise
    async with ctx.db.connect() as conn:
        found = await user_store.get_login(conn, email)
    if found is None or not found[0].enabled:
        await _burn_password_check(ctx.cfg, password)
        _log_failed_login(email, client_ip, "no such user" if found is None else "user disabled")
        raise AuthenticationFailed(_FAILED)
    user, hashed = found
    if not await verify_password(password, hashed):
        _log_failed_login(email, client_ip, "wrong password")
        raise AuthenticationFailed(_FAILED)
    async with ctx.db.begin() as conn:
        token = await create_session(ctx.cfg, conn, user.id, api_only=user.api_only)
    return user, token


def _log_failed_login(email: str, client_ip: str, reason: str) -> None:
    """One line per failed login for the operator (never the password; the email quoted and
    cut, since the client chose it)."""
    log.warning("login failed for %r from %s: %s", email[:128], client_ip or "?", reason)


async def authenticate(ctx: ServiceContext, token: str) -> Viewer:
    """The viewer behind a bearer token; AuthenticationFailed if unknown or expired."""
    if not token:
        raise AuthenticationFailed(_FAILED)
    now = utcnow()
    async with ctx.db.connect() as conn:
        session = await session_store.find_session(conn, _digest(token))
        if session is None or not session.user.enabled:
            raise AuthenticationFailed(_FAILED)
        user = session.user
        duration = dt.timedelta(seconds=ctx.cfg.session.duration)
        if not user.api_only and session.accessed_at + duration <= now:
            await session_store.delete_session(conn, session.id)
            await conn.commit()
            raise AuthenticationFailed(_FAILED)
        if now - session.accessed_at >= ACCESS_WRITE_INTERVAL:
            await session_store.touch_session(
                conn, session.id, now=now,
                expires_at=_expiry(ctx.cfg, now, api_only=user.api_only))
            await conn.commit()
    return Viewer(user_id=user.id, email=user.email, name=user.name,
                  global_role=user.global_role, session_id=session.id,
                  must_reset_password=user.force_password_reset)


async def cleanup_expired(ctx: ServiceContext) -> int:
    """Delete expired sessions nobody will present again (run periodically by the leader)."""
    async with ctx.db.begin() as conn:
        return await session_store.delete_expired(conn, utcnow())


async def logout(ctx: ServiceContext, viewer: Viewer) -> None:
    """End the session the request was authenticated with."""
    if viewer.session_id is not None:
        async with ctx.db.begin() as conn:
            await session_store.delete_session(conn, viewer.session_id)
