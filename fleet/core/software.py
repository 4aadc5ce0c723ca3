"""Software inventory: the detail queries that list a host's software, how their rows become
inventory items, and the domain types the REST API shows.

A host's list arrives as one answer of hundreds of rows. Each row becomes an `Installed`
item keyed by the checksum of its identifying fields (the shared `software` row it links
to); the store compares those keys with what it holds and writes only the difference.
Values are cut to their column widths here, before hashing, so the checksum of what is
stored and of what arrives again always agree. Pure data and functions (no I/O).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fleet.core.host_users import HUMAN_USERS_SQL

# Widths of the identifying columns (schema.py builds the `software` table from these).
WIDTHS: dict[str, int] = {
    "name": 255, "version": 255, "source": 64, "browser": 32, "bundle_identifier": 255,
    "release": 64, "vendor": 255, "arch": 16, "extension_id": 255,
}
IDENTITY = tuple(WIDTHS)  # the fields a software row is identified (and hashed) by
TITLE_IDENTITY = ("name", "source", "browser", "bundle_identifier")
PATH_WIDTH = 1024

# Fleet's users CTE: generate `users` once for all the per-user tables of a UNION.
_CACHED_USERS = f"WITH cached_users AS ({HUMAN_USERS_SQL})\n"


def _union(selects: Iterable[str]) -> str:
    return _CACHED_USERS + "\nUNION\n".join(s.strip() for s in selects) + ";"


def _select(columns: Mapping[str, str], source: str) -> str:
    return "SELECT " + ", ".join(f"{expr} AS {name}" for name, expr in columns.items()) \
        + f" FROM {source}"


def _linux(name: str = "name", extension_id: str = "''", extension_for: str = "''",
           source: str = "", release: str = "''", vendor: str = "''", arch: str = "''",
           path: str = "''") -> dict[str, str]:
    return {"name": name, "version": "version", "extension_id": extension_id,
            "extension_for": extension_for, "source": f"'{source}'", "release": release,
            "vendor": vendor, "arch": arch, "installed_path": path}


def _macos(name: str = "name", version: str = "version", bundle: str = "''",
           extension_id: str = "''", extension_for: str = "''", source: str = "",
           last_opened: str = "0", path: str = "path") -> dict[str, str]:
    return {"name": name, "version": version, "bundle_identifier": bundle,
            "extension_id": extension_id, "extension_for": extension_for,
            "source": f"'{source}'", "vendor": "''", "last_opened_at": last_opened,
            "installed_path": path}


def _windows(extension_id: str = "''", extension_for: str = "''", source: str = "",
             vendor: str = "''", path: str = "path", upgrade: str = "''") -> dict[str, str]:
    return {"name": "name", "version": "version", "extension_id": extension_id,
            "extension_for": extension_for, "source": f"'{source}'", "vendor": vendor,
            "installed_path": path, "upgrade_code": upgrade}


_PER_USER = "cached_users CROSS JOIN {} USING (uid)"

LINUX_SQL = _union((
    _select(_linux(source="deb_packages"), "deb_packages")
    + " WHERE status LIKE '% ok installed'",
    _select(_linux(name="package", source="portage_packages"), "portage_packages"),
    _select(_linux(source="rpm_packages", release="release", vendor="vendor", arch="arch"),
            "rpm_packages"),
    _select(_linux(source="npm_packages", path="path"), "npm_packages"),
    _select(_linux(extension_id="identifier", extension_for="browser_type",
                   source="chrome_extensions", path="path"),
            _PER_USER.format("chrome_extensions")),
    _select(_linux(extension_id="identifier", extension_for="'firefox'",
                   source="firefox_addons", path="path"), _PER_USER.format("firefox_addons")),
    _select(_linux(source="python_packages", path="path"), "python_packages"),
))

MACOS_SQL = _union((
    _select(_macos(
        name="COALESCE(NULLIF(display_name, ''), NULLIF(bundle_name, ''), "
             "NULLIF(NULLIF(bundle_executable, ''), 'run.sh'), CASE WHEN name IS NOT NULL "
             "AND lower(name) LIKE '%.app' THEN substr(name, 1, length(name) - 4) "
             "ELSE name END)",
        version="COALESCE(NULLIF(bundle_short_version, ''), bundle_version)",
        bundle="bundle_identifier", source="apps", last_opened="last_opened_time"), "apps"),
    _select(_macos(extension_id="identifier", extension_for="browser_type",
                   source="chrome_extensions"), _PER_USER.format("chrome_extensions")),
    _select(_macos(extension_id="identifier", extension_for="'firefox'",
                   source="firefox_addons"), _PER_USER.format("firefox_addons")),
    _select(_macos(source="safari_extensions"), _PER_USER.format("safari_extensions")),
    _select(_macos(source="homebrew_packages"), "homebrew_packages")
    + " WHERE type = 'formula'",
    _select(_macos(source="npm_packages"), "npm_packages"),
    _select(_macos(source="python_packages"), "python_packages"),
    _select(_macos(source="homebrew_packages"), "homebrew_packages")
    + " WHERE type = 'cask' AND NOT EXISTS (SELECT 1 FROM file WHERE file.path LIKE "
      "CONCAT(homebrew_packages.path, '/%%') AND file.path LIKE '%.app%' LIMIT 1)",
))

WINDOWS_SQL = _union((
    _select(_windows(source="programs", vendor="publisher", path="install_location",
                     upgrade="upgrade_code"), "programs"),
    _select(_windows(source="ie_extensions"), "ie_extensions"),
    _select(_windows(extension_id="identifier", extension_for="browser_type",
                     source="chrome_extensions"), _PER_USER.format("chrome_extensions")),
    _select(_windows(extension_id="identifier", extension_for="'firefox'",
                     source="firefox_addons"), _PER_USER.format("firefox_addons")),
    _select(_windows(source="chocolatey_packages"), "chocolatey_packages"),
    _select(_windows(source="python_packages"), "python_packages"),
))

class Installed(NamedTuple):
    """One piece of software on one host, as its list reported it (a named tuple: hundreds
    are made per host at enrollment, and a frozen dataclass costs several times more)."""

    checksum: bytes  # md5 of the identifying fields: the shared `software` row's key
    values: tuple[str, ...]  # in IDENTITY order, cut to width
    last_opened_at: dt.datetime | None
    installed_paths: frozenset[str]

    def identity(self) -> dict[str, str]:
        return dict(zip(IDENTITY, self.values, strict=True))

    def title(self) -> tuple[str, ...]:
        return tuple(self.values[IDENTITY.index(f)] for f in TITLE_IDENTITY)


def checksum(values: Sequence[str]) -> bytes:
    return hashlib.md5("\x00".join(values).encode(), usedforsecurity=False).digest()


def _epoch(text: str | None) -> dt.datetime | None:
    """osquery's last-opened times are Unix seconds (fractional on macOS); 0 = never."""
    if not text:
        return None
    try:
        seconds = int(float(text))
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds <= 0 or seconds > 253402300799:  # after 9999-12-31: nonsense
        return None
    return _EPOCH + dt.timedelta(seconds=seconds)


_EPOCH = dt.datetime(1970, 1, 1)


def _debian_python(rows: Sequence[Mapping[str, str]]) -> Sequence[Mapping[str, str]]:
    """On Debian-family hosts (the list has deb packages), a Python package apt installed
    is listed twice: `python3-<name>` from deb_packages and `<name>` from python_packages.
    As Fleet, the python_packages entry is renamed `python3-<lowercase name>` and the
    deb_packages duplicate of that name is dropped: one entry, with its path."""
    if not any(r.get("source") == "deb_packages" for r in rows):
        return rows
    renamed = [{**r, "name": "python3-" + r.get("name", "").lower()}
               if r.get("source") == "python_packages" else r for r in rows]
    python_names = {r["name"] for r in renamed if r.get("source") == "python_packages"}
    return [r for r in renamed
            if not (r.get("source") == "deb_packages" and r.get("name") in python_names)]


# The row column each identifying field comes from (osquery calls the browser
# `extension_for`), with its width.
_SOURCE_COLUMNS = tuple(("extension_for" if f == "browser" else f, w)
                        for f, w in WIDTHS.items())


def parse_rows(rows: Sequence[Mapping[str, str]]) -> dict[bytes, Installed]:
    """A host's software by checksum (rows without a name or source skipped; duplicates
    merged: their paths together, the latest last-opened time). Runs on hundreds of rows
    per host at enrollment, hence the plain loops."""
    out: dict[bytes, Installed] = {}
    for row in _debian_python(rows):
        get = row.get
        if not get("name") or not get("source"):
            continue
        values = tuple([(get(column) or "")[:width] for column, width in _SOURCE_COLUMNS])
        key = checksum(values)
        path = get("installed_path")
        path = path.strip()[:PATH_WIDTH] if path else ""
        paths = frozenset((path,)) if path and path.lower() != "null" else _NO_PATHS
        opened = _epoch(get("last_opened_at"))
        seen = out.get(key)
        if seen is not None:
            paths |= seen.installed_paths
            if seen.last_opened_at and (opened is None or seen.last_opened_at > opened):
                opened = seen.last_opened_at
        out[key] = Installed(key, values, opened, paths)
    return out


_NO_PATHS: frozenset[str] = frozenset()


# ----------------------------------------------------------------------------------------
# What people see


@dataclass(frozen=True, slots=True)
class Software:
    """A software version (Fleet's `software` object)."""

    id: int
    name: str
    version: str
    source: str
    browser: str
    bundle_identifier: str
    release: str
    vendor: str
    arch: str
    extension_id: str
    title_id: int | None
    hosts_count: int = 0


@dataclass(frozen=True, slots=True)
class TitleVersion:
    id: int
    version: str
    hosts_count: int


@dataclass(frozen=True, slots=True)
class SoftwareTitle:
    id: int
    name: str
    source: str
    browser: str
    bundle_identifier: str
    hosts_count: int
    versions: tuple[TitleVersion, ...] = ()


@dataclass(frozen=True, slots=True)
class HostSoftware:
    """One software version on one host (the host detail's `software` entries)."""

    software: Software
    last_opened_at: dt.datetime | None
    installed_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SoftwarePage:
    """A page of a software list with the freshness of its counts."""

    items: Sequence[Any]
    count: int
    counts_updated_at: dt.datetime | None
    has_next: bool
    has_previous: bool
