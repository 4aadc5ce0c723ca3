"""Users and their sessions as the services hand them around: never a password hash (the
store gives that out only to the functions that verify one)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fleet.core.authz import Role


@dataclass(frozen=True, slots=True)
class User:
    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str
    email: str
    global_role: Role | None
    api_only: bool
    enabled: bool
    force_password_reset: bool
    sso_enabled: bool
    position: str


@dataclass(frozen=True, slots=True)
class Session:
    """A stored session (found by its token's digest) and the user it authenticates."""

    id: int
    accessed_at: dt.datetime
    user: User
