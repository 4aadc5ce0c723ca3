"""The Host as people see it (REST, fleetctl, later the web UI): every stored fact about a
host except its credential (the node key never leaves the store).

The store builds these from the columns named here, so a column added to `hosts` for
internal use stays internal until someone adds it to this type and to the serializer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from fleet.core.labels import Label


@dataclass(frozen=True, slots=True)
class Host:
    id: int
    osquery_host_id: str  # the agent's own id: internal, as in Fleet (not in the Host JSON)
    team_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    detail_updated_at: dt.datetime
    label_updated_at: dt.datetime
    policy_updated_at: dt.datetime
    last_enrolled_at: dt.datetime
    refetch_requested: bool
    hostname: str
    computer_name: str
    uuid: str
    platform: str
    platform_like: str
    os_version: str
    build: str
    code_name: str
    osquery_version: str
    cpu_type: str
    cpu_subtype: str
    cpu_brand: str
    cpu_physical_cores: int
    cpu_logical_cores: int
    memory: int
    hardware_vendor: str
    hardware_model: str
    hardware_version: str
    hardware_serial: str
    uptime: int
    primary_ip: str
    primary_mac: str
    public_ip: str
    distributed_interval: int
    config_tls_refresh: int
    logger_tls_period: int
    gigs_disk_space_available: float
    percent_disk_space_available: float
    gigs_total_disk_space: float
    software_updated_at: dt.datetime | None  # last change of its software list
    seen_time: dt.datetime  # last check-in (created_at until the first one)


@dataclass(frozen=True, slots=True)
class HostSeen:
    """The facts a host's status comes from (what live-query totals count)."""

    id: int
    seen_time: dt.datetime
    distributed_interval: int
    config_tls_refresh: int


# Field names in declaration order: the store selects exactly these (and builds `Host(*row)`).
HOST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Host))

# A host as a plain tuple of its values in HOST_FIELDS order (`Host(*values)` makes the type):
# how lists of thousands of hosts travel, since a tuple costs nothing to build and a frozen
# 40-field dataclass about 5 us (half a second for a 100k-host list).
HostValues = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class PlatformCount:
    platform: str
    hosts_count: int


@dataclass(frozen=True, slots=True)
class HostSummary:
    """`GET /host_summary`: how many hosts are in each state, per platform, and the
    built-in labels a dashboard links to (status as of one instant for every count)."""

    totals_hosts_count: int
    online_count: int
    offline_count: int
    mia_count: int
    new_count: int
    all_linux_count: int
    low_disk_space_count: int | None  # only when asked for with a threshold
    platforms: tuple[PlatformCount, ...]
    builtin_labels: tuple[Label, ...] = ()  # added by the service from the label store


@dataclass(frozen=True, slots=True)
class HostFilter:
    """The host-list filters beyond the common list options (`GET /hosts`, `/hosts/count`,
    `/hosts/report`, bulk actions), already validated by the transport."""

    status: str | None = None
    label_id: int | None = None
    team_id: int | None = None
    low_disk_space: int | None = None  # GB: hosts with less space available than this
    after: str | None = None  # keyset paging: rows after this value of the order_key
    software_version_id: int | None = None  # hosts with this software version
    software_title_id: int | None = None  # hosts with any version of this title
