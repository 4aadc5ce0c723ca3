"""Detail queries (host vitals): what Fleet asks every host, and how answers become columns.

Each query is sent as `fleet_detail_query_<name>` when the host's details are due (the
detail family of `fleet/service/families.py`). Its `ingest` turns the returned rows into
host column values; the same functions ingest the `host_details` an agent sends at
enrollment, so both paths agree. A query whose answer belongs in tables of its own (software,
users: many rows, not columns) has a `direct_ingest` instead, as Fleet's
DirectIngestFunc: it writes through the narrow `HostTables` Protocol, inside the transaction
of the whole write. Software lists (hundreds of rows a host, all hosts at once after an
enrollment burst) are marked `software_list`: the service stores them after the request,
batched with other hosts' (`service/software_writer.py`). Pure data and
functions (no I/O here), which is why it lives in core/.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fleet.core import host_users, software
from fleet.core.agent_values import clean_row

Rows = Sequence[Mapping[str, str]]
PREFIX = "fleet_detail_query_"

LINUX_PLATFORMS = frozenset({
    "linux", "ubuntu", "debian", "rhel", "centos", "sles", "kali", "gentoo", "amzn", "pop",
    "arch", "linuxmint", "void", "nixos", "endeavouros", "manjaro", "opensuse-leap",
    "opensuse-tumbleweed", "tuxedo", "fedora",
})


def generic_platform(platform: str) -> str:
    """Fleet's platform families: every Linux distribution is `linux`."""
    return "linux" if platform in LINUX_PLATFORMS else platform


@dataclass(frozen=True)
class IngestContext:
    """Request facts an ingest function may need besides the rows."""

    public_ip: str = ""


class HostTables(Protocol):
    """What a direct ingest may write: one host's rows in tables other than `hosts`, in the
    transaction of the whole write (implemented by `store/hosts.py:HostTables`). Methods
    are added here as direct ingests need them, never the whole store."""

    async def replace_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Make `rows` (without `host_id`) the host's rows of `table`."""

    async def sync_users(self, users: Sequence[host_users.HostUser]) -> None:
        """Make `users` the host's users (no write when they are what is stored)."""

    async def record_label_results(self, results: Mapping[int, bool]) -> None:
        """The host's answers to dynamic labels, by label id: True adds the membership,
        False removes it (in two statements whatever the number of labels)."""


Ingest = Callable[[Rows, IngestContext], dict[str, Any]]
DirectIngest = Callable[[HostTables, Rows, IngestContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DetailQuery:
    name: str
    sql: str
    ingest: Ingest | None = None  # into host columns
    platforms: frozenset[str] = frozenset()  # generic platforms; empty = all
    discovery: str = ""
    direct_ingest: DirectIngest | None = None  # into tables of its own
    # Its answer is a software list: stored after the request, in batches of hosts.
    software_list: bool = False
    feature: str = ""  # the `features.*` flag that must be on for it to be asked; "": always

    def __post_init__(self) -> None:
        if self.ingest is None and self.direct_ingest is None and not self.software_list:
            raise ValueError(f"detail query {self.name} has no ingest")

    def runs_on(self, platform: str) -> bool:
        return not self.platforms or generic_platform(platform) in self.platforms


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf"
        return default


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _first(rows: Rows) -> Mapping[str, str] | None:
    return rows[0] if rows else None


def os_version_string(row: Mapping[str, str]) -> str:
    """`<name> <version>` as Fleet shows it, e.g. `Ubuntu 22.04.4 LTS`, `macOS 14.4.1`."""
    name = row.get("name", "")
    version = row.get("version", "")
    if row.get("platform") == "windows":
        return f"{name} {version}".strip()
    if name.lower().startswith("ubuntu") and version:
        parsed = re.sub(r"\s*\(.*\)\s*$", "", version)
    else:
        parts = [row.get(k, "") or "0" for k in ("major", "minor", "patch")]
        if any(p != "0" for p in parts):
            parsed = ".".join(parts)
        else:
            parsed = row.get("build", "") or version
        extra = row.get("extra", "")
        if extra and row.get("platform") == "darwin":
            parsed = f"{parsed} {extra}"
    return f"{name} {parsed}".strip()


def ingest_os_version(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    row = _first(rows)
    if row is None:
        return {}
    return {
        "platform": row.get("platform", ""),
        "platform_like": row.get("platform_like", ""),
        "code_name": row.get("codename", ""),
        "build": row.get("build", ""),
        "os_version": os_version_string(row),
    }


def ingest_osquery_info(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    row = _first(rows)
    return {"osquery_version": row.get("version", "")} if row else {}


def ingest_system_info(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    row = _first(rows)
    if row is None:
        return {}
    serial = row.get("hardware_serial", "")
    return {
        "hostname": row.get("hostname", ""),
        "computer_name": row.get("computer_name", ""),
        "uuid": row.get("uuid", ""),
        "cpu_type": row.get("cpu_type", ""),
        "cpu_subtype": row.get("cpu_subtype", ""),
        "cpu_brand": row.get("cpu_brand", "").strip(),
        "cpu_physical_cores": _int(row.get("cpu_physical_cores")),
        "cpu_logical_cores": _int(row.get("cpu_logical_cores")),
        "memory": _int(row.get("physical_memory")),
        "hardware_vendor": row.get("hardware_vendor", ""),
        "hardware_model": row.get("hardware_model", ""),
        "hardware_version": row.get("hardware_version", ""),
        "hardware_serial": "" if serial == "-1" else serial,
    }


def ingest_uptime(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    row = _first(rows)
    # Fleet stores uptime as a Go duration: nanoseconds.
    return {"uptime": _int(row.get("total_seconds")) * 1_000_000_000} if row else {}


def ingest_osquery_flags(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    flags = {r.get("name", ""): r.get("value", "") for r in rows}
    out: dict[str, Any] = {}
    if "distributed_interval" in flags:
        out["distributed_interval"] = _int(flags["distributed_interval"])
    refresh = flags.get("config_tls_refresh") or flags.get("config_refresh")
    if refresh is not None:
        out["config_tls_refresh"] = _int(refresh)
    if "logger_tls_period" in flags:
        out["logger_tls_period"] = _int(flags["logger_tls_period"])
    return out


def _parses_as_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ingest_network_interface(rows: Rows, ctx: IngestContext) -> dict[str, Any]:
    out: dict[str, Any] = {"public_ip": ctx.public_ip if _parses_as_ip(ctx.public_ip) else ""}
    row = _first(rows)
    if row is not None:
        out["primary_ip"] = row.get("address", "")
        out["primary_mac"] = row.get("mac", "")
    return out


def ingest_disk_space(rows: Rows, _ctx: IngestContext) -> dict[str, Any]:
    row = _first(rows)
    if row is None:
        return {}
    return {
        "gigs_disk_space_available": _float(row.get("gigs_disk_space_available")),
        "percent_disk_space_available": _float(row.get("percent_disk_space_available")),
        "gigs_total_disk_space": _float(row.get("gigs_total_disk_space")),
    }


_UNIX = frozenset({"linux", "darwin"})
_NETWORK_UNIX_SQL = """
SELECT ia.address, id.mac
FROM interface_addresses ia
JOIN interface_details id ON id.interface = ia.interface
JOIN routes r ON r.interface = ia.interface
WHERE (r.destination = '0.0.0.0' OR r.destination = '::') AND r.netmask = 0
  AND r.type = 'gateway'
  AND (
    inet_aton(ia.address) IS NOT NULL AND (
      split(ia.address, '.', 0) = '10'
      OR (split(ia.address, '.', 0) = '172' AND (CAST(split(ia.address, '.', 1) AS INTEGER) & 0xf0) = 16)
      OR (split(ia.address, '.', 0) = '192' AND split(ia.address, '.', 1) = '168')
    )
    OR (inet_aton(ia.address) IS NULL AND regex_match(lower(ia.address), '^f[cd][0-9a-f][0-9a-f]:[0-9a-f:]+', 0) IS NOT NULL)
  )
ORDER BY r.metric ASC, inet_aton(ia.address) IS NOT NULL DESC
LIMIT 1;
""".strip()  # noqa: E501
_NETWORK_WINDOWS_SQL = """
SELECT ia.address, id.mac
FROM interface_addresses ia
JOIN interface_details id ON id.interface = ia.interface
JOIN routes r ON r.interface = ia.address
WHERE (r.destination = '0.0.0.0' OR r.destination = '::') AND r.netmask = 0
  AND r.type = 'remote'
ORDER BY r.metric ASC, inet_aton(ia.address) IS NOT NULL DESC
LIMIT 1;
""".strip()

async def ingest_users(tables: HostTables, rows: Rows, _ctx: IngestContext) -> None:
    await tables.sync_users(host_users.parse_users(rows))


def _software(name: str, sql: str, platform: str) -> DetailQuery:
    return DetailQuery(name, sql, platforms=frozenset({platform}),
                       software_list=True, feature="enable_software_inventory")


CATALOG: tuple[DetailQuery, ...] = (
    DetailQuery("os_version", "SELECT * FROM os_version LIMIT 1", ingest_os_version),
    DetailQuery("osquery_info", "SELECT * FROM osquery_info LIMIT 1", ingest_osquery_info),
    DetailQuery("system_info", "SELECT * FROM system_info LIMIT 1", ingest_system_info),
    DetailQuery("uptime", "SELECT * FROM uptime LIMIT 1", ingest_uptime,
                platforms=frozenset({"linux", "darwin", "windows"})),
    DetailQuery(
        "osquery_flags",
        "SELECT name, value FROM osquery_flags WHERE name IN ('distributed_interval', "
        "'config_tls_refresh', 'config_refresh', 'logger_tls_period')",
        ingest_osquery_flags, platforms=frozenset({"linux", "darwin", "windows"})),
    DetailQuery("network_interface_unix", _NETWORK_UNIX_SQL, ingest_network_interface,
                platforms=_UNIX),
    DetailQuery("network_interface_windows", _NETWORK_WINDOWS_SQL, ingest_network_interface,
                platforms=frozenset({"windows"})),
    DetailQuery(
        "disk_space_unix",
        "SELECT (blocks_available * 100 / blocks) AS percent_disk_space_available, "
        "round((blocks_available * blocks_size * 10e-10), 2) AS gigs_disk_space_available, "
        "round((blocks * blocks_size * 10e-10), 2) AS gigs_total_disk_space "
        "FROM mounts WHERE path = '/' LIMIT 1",
        ingest_disk_space, platforms=_UNIX),
    DetailQuery(
        "disk_space_windows",
        "SELECT ROUND((sum(free_space) * 100 * 10e-10) / (sum(size) * 10e-10)) AS "
        "percent_disk_space_available, ROUND(sum(free_space) * 10e-10) AS "
        "gigs_disk_space_available, ROUND(sum(size) * 10e-10) AS gigs_total_disk_space "
        "FROM logical_drives WHERE file_system = 'NTFS' LIMIT 1",
        ingest_disk_space, platforms=frozenset({"windows"})),
    DetailQuery("users", host_users.HUMAN_USERS_SQL, platforms=frozenset({"linux", "darwin",
                                                                          "windows"}),
                direct_ingest=ingest_users, feature="enable_host_users"),
    _software("software_linux", software.LINUX_SQL, "linux"),
    _software("software_macos", software.MACOS_SQL, "darwin"),
    _software("software_windows", software.WINDOWS_SQL, "windows"),
)

BY_NAME: dict[str, DetailQuery] = {q.name: q for q in CATALOG}

# Enrollment `host_details` tables and the detail query whose ingest understands them.
ENROLL_DETAILS = ("os_version", "osquery_info", "system_info")


def queries_for_platform(platform: str) -> dict[str, DetailQuery]:
    """Detail queries keyed by name (sent as `fleet_detail_query_<name>`)."""
    return {q.name: q for q in CATALOG if q.runs_on(platform)}


def ingest_enroll_details(host_details: Mapping[str, Any]
                          ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Host columns from the `host_details` of an enroll request (missing tables skipped),
    and per table the columns dropped because they held no column value."""
    values: dict[str, Any] = {}
    dropped: dict[str, list[str]] = {}
    for table in ENROLL_DETAILS:
        row = host_details.get(table)
        if isinstance(row, Mapping):
            clean, dropped[table] = clean_row(row)
            ingest = BY_NAME[table].ingest
            assert ingest is not None  # the enrollment tables are host columns
            values.update(ingest([clean], IngestContext()))
        elif row is not None:
            dropped[table] = ["<row>"]
    return values, dropped
