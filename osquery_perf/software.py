"""Software lists as Fleet's ``software_<platform>`` detail queries return them, with churn.

Each row carries exactly the columns of that platform's query (Fleet's SQL: linux has
release/vendor/arch, macOS bundle_identifier and last_opened_at, Windows upgrade_code), with
the values that SQL gives (no arch for a deb package, no vendor for an app). Rows come from
the template's shared catalogue, shaped once per template, so thousands of hosts share them.

Churn: every ``CHURN.interval`` seconds (per-host phase, so a fleet does not change at
once) ``CHURN.count`` of a host's packages report another version, chosen by the host's
seed and the period: the server sees a few packages change now and then, deterministically.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from functools import cache

from osquery_perf.tables import Ctx
from osquery_perf.templates import HostData, Row, software_catalogue

COLUMNS: dict[str, tuple[str, ...]] = {
    "linux": ("name", "version", "extension_id", "extension_for", "source", "release",
              "vendor", "arch", "installed_path"),
    "darwin": ("name", "version", "bundle_identifier", "extension_id", "extension_for",
               "source", "vendor", "last_opened_at", "installed_path"),
    "windows": ("name", "version", "extension_id", "extension_for", "source", "vendor",
                "installed_path", "upgrade_code"),
}
# Sources whose Fleet SQL selects these columns (the others are '' there).
_RPM_ONLY = ("release", "vendor", "arch")
_PATHLESS = ("deb_packages", "portage_packages", "rpm_packages")


@dataclass
class Churn:
    interval: float = 3600.0  # seconds between a host's changes; 0: never
    count: int = 2            # packages changed each time


CHURN = Churn()


def configure(interval: float, count: int) -> None:
    """Set the churn of every simulated host in this process (the CLI's flags)."""
    CHURN.interval, CHURN.count = max(0.0, interval), max(0, count)


def _shape(row: Row, family: str) -> Row:
    values = {**row, "extension_for": row.get("browser", "")}
    source = row["source"]
    if family == "linux":
        if source != "rpm_packages":
            values.update(dict.fromkeys(_RPM_ONLY, ""))
        if source in _PATHLESS:
            values["installed_path"] = ""
    elif family == "darwin":
        values["vendor"] = ""
        crc = zlib.crc32(row["name"].encode())
        # Apps opened some time in the year before the epoch-second below; others "0".
        values["last_opened_at"] = str(1_700_000_000 - crc % 31_536_000) \
            if source == "apps" and crc % 4 else "0"
    elif source != "programs":
        values["vendor"] = ""
    return {c: values.get(c, "") for c in COLUMNS[family]}


@cache
def _shaped(template: str, family: str) -> tuple[Row, ...]:
    return tuple(_shape(fleet, family) for fleet, _ in software_catalogue(template))


def rows(host: HostData, now: float) -> list[Row]:
    """The host's software list at `now`."""
    shaped = _shaped(host.template.name, host.family)
    out = [shaped[i] for i in host.software_index]
    out.extend(_shape(fleet, host.family) for fleet, _ in host.unique_software)
    if CHURN.interval > 0 and CHURN.count > 0 and out:
        phase = zlib.crc32(host.uuid.encode()) % int(max(1.0, CHURN.interval))
        period = int((now + phase) // CHURN.interval)
        rng = random.Random(f"churn:{host.seed}:{host.index}:{period}")
        for i in rng.sample(range(len(out)), min(CHURN.count, len(out))):
            out[i] = {**out[i], "version": f"{out[i]['version']}.{period % 1000}"}
    return out


def detail_rows(ctx: Ctx) -> list[Row]:
    """The answer to ``fleet_detail_query_software_<platform>``."""
    return rows(ctx.host, ctx.now)
