"""Host users: the `users` detail query (Fleet's, asked while `features.enable_host_users`
is on) and its rows as `HostUser`s. Pure data and functions.

The query leaves out what is not a person's account, as Fleet does: special (system)
users, users whose shell only refuses logins (`false`, `nologin`, `shutdown`, `halt`),
`_`-prefixed service accounts (macOS), `$`-suffixed machine accounts (Windows) and the
`sync` account. The software queries reuse it to read per-user tables once per user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

HUMAN_USERS_SQL = (
    "WITH cached_groups AS (select * from groups) "
    "SELECT uid, uuid, username, type, groupname, shell FROM users "
    "LEFT JOIN cached_groups USING (gid) WHERE type <> 'special' "
    "AND shell NOT LIKE '%/false' AND shell NOT LIKE '%/nologin' "
    "AND shell NOT LIKE '%/shutdown' AND shell NOT LIKE '%/halt' "
    "AND username NOT LIKE '%$' AND username NOT LIKE '\\_%' ESCAPE '\\' "
    "AND NOT (username = 'sync' AND shell ='/bin/sync' AND directory <> '')")

WIDTH = 255  # of each text column of host_users
UID_LIMIT = 2**63 - 1


class HostUser(NamedTuple):
    uid: int
    username: str
    type: str
    groupname: str
    shell: str


def _uid(text: str) -> int | None:
    try:
        uid = int(text)
    except (TypeError, ValueError):
        return None
    return uid if -UID_LIMIT <= uid <= UID_LIMIT else None


def parse_users(rows: Sequence[Mapping[str, str]]) -> list[HostUser]:
    """The rows as users, one per (uid, username); rows without a username or a numeric
    uid are left out (osquery always sends both)."""
    found: dict[tuple[int, str], HostUser] = {}
    for row in rows:
        uid, name = _uid(row.get("uid", "")), (row.get("username") or "")[:WIDTH]
        if uid is None or not name:
            continue
        found[(uid, name)] = HostUser(uid, name, (row.get("type") or "")[:WIDTH],
                                      (row.get("groupname") or "")[:WIDTH],
                                      (row.get("shell") or "")[:WIDTH])
    return sorted(found.values())
