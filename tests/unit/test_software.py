"""Software rows (pure): Fleet's SQL per platform, row parsing, and the simulated agent's
answers having that SQL's columns and real churn."""

from __future__ import annotations

import re

import pytest

from fleet.core import detail_queries
from fleet.core.software import LINUX_SQL, MACOS_SQL, WIDTHS, WINDOWS_SQL, parse_rows
from osquery_perf import software as perf
from osquery_perf.templates import make_host


def deb(name: str, version: str = "1") -> dict[str, str]:
    return {"name": name, "version": version, "source": "deb_packages"}


def test_software_queries_per_platform_behind_the_feature_flag() -> None:
    for platform, name in (("ubuntu", "software_linux"), ("darwin", "software_macos"),
                           ("windows", "software_windows")):
        [query] = [q for n, q in detail_queries.queries_for_platform(platform).items()
                   if n.startswith("software_")]
        assert query.name == name and query.feature == "enable_software_inventory"
        assert query.software_list
    assert "WHERE status LIKE '% ok installed'" in LINUX_SQL
    for sql, sources in ((LINUX_SQL, "deb_packages portage_packages rpm_packages npm_packages "
                          "chrome_extensions firefox_addons python_packages"),
                         (MACOS_SQL, "apps chrome_extensions firefox_addons safari_extensions "
                          "homebrew_packages npm_packages python_packages"),
                         (WINDOWS_SQL, "programs ie_extensions chrome_extensions "
                          "firefox_addons chocolatey_packages python_packages")):
        assert set(re.findall(r"'(\w+)' AS source", sql)) == set(sources.split())
        assert sql.startswith("WITH cached_users AS (")


def test_parse_merges_duplicates_and_cuts_to_width() -> None:
    rows = [{"name": "x" * 300, "version": "1", "source": "npm_packages",
             "installed_path": "/a"},
            {"name": "x" * 300, "version": "1", "source": "npm_packages",
             "installed_path": "/b", "last_opened_at": "1700000000.7"},
            {"name": "", "version": "1", "source": "npm_packages"},
            {"name": "no-source", "version": "1", "source": ""},
            {"name": "null-path", "version": "1", "source": "npm_packages",
             "installed_path": "NULL"},
            {"name": "ext", "version": "2", "source": "chrome_extensions",
             "extension_for": "chrome", "extension_id": "abc", "last_opened_at": "-1"}]
    items = parse_rows(rows)
    assert len(items) == 3
    long = next(i for i in items.values() if i.values[0].startswith("x"))
    assert len(long.values[0]) == WIDTHS["name"]
    assert long.installed_paths == {"/a", "/b"} and long.last_opened_at is not None
    ext = next(i for i in items.values() if i.values[0] == "ext")
    assert ext.identity()["browser"] == "chrome" and ext.last_opened_at is None
    assert next(i for i in items.values() if i.values[0] == "null-path").installed_paths \
        == frozenset()
    # The checksum depends on the identifying fields only.
    assert set(parse_rows(rows)) == set(items)


def test_debian_python_packages_are_merged_with_their_deb() -> None:
    rows = [deb("python3-requests", "2.28.1-1"), deb("bash"),
            {"name": "Requests", "version": "2.28.1", "source": "python_packages",
             "installed_path": "/usr/lib/python3/dist-packages"},
            {"name": "boto3", "version": "1.34", "source": "python_packages"}]
    names = sorted((i.identity()["name"], i.identity()["source"])
                   for i in parse_rows(rows).values())
    assert names == [("bash", "deb_packages"), ("python3-boto3", "python_packages"),
                     ("python3-requests", "python_packages")]
    # Not a Debian-family list (no deb packages): names kept.
    mac = [{"name": "Requests", "version": "2", "source": "python_packages"}]
    assert [i.identity()["name"] for i in parse_rows(mac).values()] == ["Requests"]


def _aliases(sql: str) -> tuple[str, ...]:
    first = sql.split("\nUNION\n")[0].split(")\n", 1)[1]
    return tuple(re.findall(r" AS (\w+)", first.split(" FROM ")[0]))


@pytest.mark.parametrize(("template", "sql"), [("ubuntu", LINUX_SQL), ("macos", MACOS_SQL),
                                               ("windows", WINDOWS_SQL)])
def test_simulated_rows_have_the_queries_columns_and_churn(template: str, sql: str) -> None:
    host = make_host(template, 5, seed=11)
    now = 2_000_000_000.0
    rows = perf.rows(host, now)
    assert all(tuple(r) == _aliases(sql) for r in rows)
    assert 200 <= len(rows) <= 1000
    assert perf.rows(host, now) == rows  # deterministic
    later = parse_rows(perf.rows(host, now + 2 * perf.CHURN.interval))
    changed = set(parse_rows(rows)) - set(later)
    assert 0 < len(changed) <= 2 * perf.CHURN.count
    try:
        perf.configure(0, 5)
        assert perf.rows(host, now) == perf.rows(host, now + 10 * 3600)
    finally:
        perf.configure(3600, 2)
