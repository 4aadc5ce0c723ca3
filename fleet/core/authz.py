"""Who may do what: global roles and the actions they allow (Fleet's permission matrix)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.core.errors import PermissionDenied


class Role(StrEnum):
    ADMIN = "admin"
    MAINTAINER = "maintainer"
    OBSERVER = "observer"
    OBSERVER_PLUS = "observer_plus"


class Action(StrEnum):
    READ_HOSTS = "read_hosts"
    WRITE_HOSTS = "write_hosts"          # delete, refetch
    READ_QUERIES = "read_queries"
    WRITE_QUERIES = "write_queries"      # create/modify/delete saved queries
    RUN_SAVED_QUERIES = "run_saved_queries"  # still subject to observer_can_run for observers
    RUN_NEW_QUERIES = "run_new_queries"  # ad-hoc SQL
    READ_LABELS = "read_labels"
    READ_SECRETS = "read_secrets"
    WRITE_SECRETS = "write_secrets"
    READ_USERS = "read_users"
    WRITE_USERS = "write_users"
    TRIGGER_SCHEDULES = "trigger_schedules"  # run a named schedule now (Fleet: admins)


_OBSERVER = {Action.READ_HOSTS, Action.READ_QUERIES, Action.RUN_SAVED_QUERIES,
             Action.READ_LABELS}
_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.OBSERVER: frozenset(_OBSERVER),
    Role.OBSERVER_PLUS: frozenset(_OBSERVER | {Action.RUN_NEW_QUERIES}),
    Role.MAINTAINER: frozenset(_OBSERVER | {
        Action.WRITE_HOSTS, Action.WRITE_QUERIES, Action.RUN_NEW_QUERIES,
        Action.READ_SECRETS, Action.WRITE_SECRETS}),
    Role.ADMIN: frozenset(Action),
}


@dataclass(frozen=True)
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

    def can(self, action: Action) -> bool:
        return self.global_role is not None and action in _ALLOWED[self.global_role]

    def require(self, action: Action) -> None:
        """Raise PermissionDenied unless this viewer may perform `action`."""
        if not self.can(action):
            raise PermissionDenied("forbidden")

    @property
    def is_observer(self) -> bool:
        return self.global_role in (Role.OBSERVER, Role.OBSERVER_PLUS)
