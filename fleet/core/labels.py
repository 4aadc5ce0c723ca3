"""Labels: named host sets, dynamic (a query's answer) or manual (hosts listed by hand).

The built-in labels (created by the migrations, `label_type` builtin) cannot be changed or
deleted. A dynamic label is asked of each host whose platform it names ('' = every host) as
`fleet_label_query_<id>`: rows mean member, no rows mean not, a failed query removes the
membership (Fleet's tri-state).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The built-in label every host belongs to: targeting it targets every host, whatever the
# membership rows say (enrollment also makes every new host a member at once).
ALL_HOSTS = "All Hosts"
BUILTIN, REGULAR = "builtin", "regular"
DYNAMIC, MANUAL = "dynamic", "manual"
# What a label's platform may be ('' = every platform), as Fleet accepts it.
PLATFORMS = ("", "darwin", "windows", "ubuntu", "centos", "rhel", "linux", "chrome")
PREFIX = "fleet_label_query_"


@dataclass(frozen=True, slots=True)
class Label:
    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str
    description: str
    query: str
    platform: str
    label_type: str  # regular | builtin
    label_membership_type: str  # dynamic | manual
    host_count: int = 0  # hosts the viewer may see (0 where not counted)


@dataclass(frozen=True, slots=True)
class LabelQuery:
    """What the agent path needs of a dynamic label (kept in memory by every instance)."""

    id: int
    query: str
    platform: str

    def runs_on(self, platform: str) -> bool:
        return not self.platform or self.platform == platform


def membership_result(failed: bool, rows: int) -> bool | None:
    """Fleet's tri-state of one label answer: member, not member, or None (failed: the
    membership is removed, as for not member)."""
    return None if failed else rows > 0
