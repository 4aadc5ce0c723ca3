"""Labels: named host sets, dynamic (a query's answer) or manual. Only the built-in
"All Hosts" label exists so far; the type is what hosts' detail pages and targets show."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The built-in label every host belongs to: targeting it targets every host, whatever the
# membership rows say.
ALL_HOSTS = "All Hosts"


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
