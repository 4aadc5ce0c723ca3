"""Who may do what to which object: roles, global and per team, Fleet's permission matrix, and
the record that a request was authorized at all.

A viewer holds a global role and a role per team (Fleet lets a user have one or the other;
the model allows both). `authorize(viewer, action, subject)` decides on one object from the
object's `team_id` (None: a global object, such as a global query or a host in no team): the
global role applies to every object, a team role only to that team's objects, except that the
definitions every team shares (global queries and labels) may be read by any team member.
Lists are authorized with `authorize_any`, whose `TeamFilter` the store applies in SQL, so a
viewer's lists, counts and live-query targets hold only what it may see.

Every REST request must reach one of `authorize`, `authorize_any` or `authorize_none`: the
transport opens an `AuthzCheck` per request (`track`), these functions mark it, and an answer
without a mark is turned into a logged 500 (Fleet's authzcheck middleware).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fleet.core.errors import PermissionDenied


class Role(StrEnum):
    ADMIN = "admin"
    MAINTAINER = "maintainer"
    OBSERVER = "observer"
    OBSERVER_PLUS = "observer_plus"
    GITOPS = "gitops"


class Action(StrEnum):
    READ_HOSTS = "read_hosts"
    WRITE_HOSTS = "write_hosts"          # delete, refetch
    READ_QUERIES = "read_queries"
    WRITE_QUERIES = "write_queries"      # create/modify/delete saved queries
    RUN_SAVED_QUERIES = "run_saved_queries"  # observers: only queries with observer_can_run
    RUN_NEW_QUERIES = "run_new_queries"  # ad-hoc SQL
    READ_LABELS = "read_labels"
    WRITE_LABELS = "write_labels"        # create/modify/delete labels, manual memberships
    READ_SECRETS = "read_secrets"
    WRITE_SECRETS = "write_secrets"
    READ_USERS = "read_users"            # also allowed on oneself
    WRITE_USERS = "write_users"          # also allowed on oneself (not one's role)
    WATCH_CAMPAIGN = "watch_campaign"    # only its creator's, whatever the role
    TRIGGER_SCHEDULES = "trigger_schedules"  # run a named schedule now (Fleet: global admins)
    READ_APP_CONFIG = "read_app_config"  # every signed-in user, as Fleet
    WRITE_APP_CONFIG = "write_app_config"  # admins and gitops


_OBSERVER = {Action.READ_HOSTS, Action.READ_QUERIES, Action.RUN_SAVED_QUERIES,
             Action.READ_LABELS, Action.READ_APP_CONFIG}
# Actions nobody holds by role: they come from owning the object.
_OWNER_ONLY = frozenset({Action.WATCH_CAMPAIGN})
_OWNER_MAY = frozenset({Action.READ_USERS, Action.WRITE_USERS, Action.WATCH_CAMPAIGN})
_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.OBSERVER: frozenset(_OBSERVER),
    Role.OBSERVER_PLUS: frozenset(_OBSERVER | {Action.RUN_NEW_QUERIES}),
    Role.MAINTAINER: frozenset(_OBSERVER | {
        Action.WRITE_HOSTS, Action.WRITE_QUERIES, Action.RUN_NEW_QUERIES,
        Action.READ_SECRETS, Action.WRITE_SECRETS, Action.WRITE_LABELS}),
    Role.ADMIN: frozenset(Action) - _OWNER_ONLY,
    # API-only and write-only, for CI: it applies queries and enroll secrets (whose "CRUD"
    # includes reading them) but sees no hosts and runs nothing.
    Role.GITOPS: frozenset({Action.WRITE_QUERIES, Action.READ_SECRETS, Action.WRITE_SECRETS,
                            Action.WRITE_LABELS, Action.READ_APP_CONFIG,
                            Action.WRITE_APP_CONFIG}),
}
# Global objects every team uses: a team member may read these as its role allows.
_SHARED = frozenset({Action.READ_QUERIES, Action.READ_LABELS, Action.READ_APP_CONFIG})


@dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated user behind a request."""

    user_id: int
    email: str
    name: str
    global_role: Role | None
    session_id: int | None = None
    # An admin required a new password: until it is set the user may only see themselves,
    # log out and set it (Fleet's admin_forced_password_reset).
    must_reset_password: bool = False
    teams: Mapping[int, Role] = field(default_factory=dict)  # team id -> role on that team


class HasTeam(Protocol):
    """An object authorization can decide on: domain types carrying `team_id` qualify."""

    @property
    def team_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Subject:
    """An object as far as authorization needs it, for callers without a domain object."""

    team_id: int | None = None
    owner_id: int | None = None     # the user it belongs to (a user is their own owner)
    observer_can_run: bool = False  # a saved query observers may run


GLOBAL = Subject()  # a global object: a user, an enroll secret, a global query


def _role_allows(role: Role, action: Action, subject: HasTeam) -> bool:
    if action not in _ALLOWED[role]:
        return False
    if action is Action.RUN_SAVED_QUERIES and role is Role.OBSERVER:
        return isinstance(subject, Subject) and subject.observer_can_run
    return True


def allowed(viewer: Viewer, action: Action, subject: HasTeam) -> bool:
    """Whether `viewer` may do `action` to `subject` (a question, not a check: use
    `authorize` to guard an operation)."""
    if isinstance(subject, Subject) and subject.owner_id == viewer.user_id \
            and action in _OWNER_MAY:
        return True
    if viewer.global_role is not None and _role_allows(viewer.global_role, action, subject):
        return True
    if subject.team_id is not None:
        role = viewer.teams.get(subject.team_id)
        return role is not None and _role_allows(role, action, subject)
    return action in _SHARED and any(_role_allows(role, action, subject)
                                     for role in viewer.teams.values())


@dataclass(frozen=True, slots=True)
class TeamFilter:
    """The objects a list may show a viewer (Fleet's TeamFilter): every team's, or those of
    `team_ids`; plus, with `global_objects`, those of no team."""

    all_teams: bool = False
    team_ids: frozenset[int] = frozenset()
    global_objects: bool = False

    @property
    def unrestricted(self) -> bool:
        return self.all_teams and self.global_objects

    @property
    def empty(self) -> bool:
        return not (self.all_teams or self.team_ids or self.global_objects)


# For internal callers acting for nobody in particular (background jobs, the agent path).
EVERYTHING = TeamFilter(all_teams=True, global_objects=True)


def team_filter(viewer: Viewer, action: Action, like: HasTeam = GLOBAL) -> TeamFilter:
    """Where `viewer` may do `action` to objects like `like` (its team aside): the filter a
    list of such objects applies."""
    if viewer.global_role is not None and _role_allows(viewer.global_role, action, like):
        return EVERYTHING
    teams = frozenset(team for team, role in viewer.teams.items()
                      if _role_allows(role, action, like))
    return TeamFilter(team_ids=teams, global_objects=bool(teams) and action in _SHARED)


# ----------------------------------------------------------------------------------------------
# Checks, and the record of them


class AuthzCheck:
    """Whether the current request was authorized (or declared to need no authorization)."""

    __slots__ = ("checked",)

    def __init__(self) -> None:
        self.checked = False


_current: ContextVar[AuthzCheck | None] = ContextVar("fleet_authz_check", default=None)


@contextlib.contextmanager
def track() -> Iterator[AuthzCheck]:
    """Record the checks made until the block ends (one request)."""
    check = AuthzCheck()
    token = _current.set(check)
    try:
        yield check
    finally:
        _current.reset(token)


def _mark() -> None:
    check = _current.get()
    if check is not None:
        check.checked = True


def authorize(viewer: Viewer, action: Action, subject: HasTeam,
              message: str = "forbidden") -> None:
    """Raise PermissionDenied unless `viewer` may do `action` to `subject`."""
    _mark()
    if not allowed(viewer, action, subject):
        raise PermissionDenied(message)


def authorize_any(viewer: Viewer, action: Action, like: HasTeam = GLOBAL) -> TeamFilter:
    """Authorize `action` on a list of objects like `like`: PermissionDenied unless the viewer
    may do it somewhere; the filter that keeps the list to where it may."""
    _mark()
    teams = team_filter(viewer, action, like)
    if teams.empty:
        raise PermissionDenied("forbidden")
    return teams


def authorize_none(reason: str) -> None:
    """Declare that the current operation needs no authorization; `reason` says why at the
    call site (setup, login, health checks, one's own session)."""
    _mark()
