"""Host vitals ingestion: the rules that turn osquery rows into host columns."""

from __future__ import annotations

import datetime as dt

from fleet.core import detail_queries as dq
from fleet.core import hoststatus

CTX = dq.IngestContext()


def test_os_version_strings() -> None:
    assert dq.os_version_string({"name": "Ubuntu", "version": "22.04.4 LTS (Jammy Jellyfish)",
                                 "major": "22", "minor": "4", "patch": "0"}) == \
        "Ubuntu 22.04.4 LTS"
    assert dq.os_version_string({"name": "macOS", "major": "14", "minor": "4", "patch": "1",
                                 "platform": "darwin", "extra": "(a)"}) == "macOS 14.4.1 (a)"
    assert dq.os_version_string({"name": "CentOS Linux", "major": "0", "minor": "0",
                                 "patch": "0", "build": "7.9.2009"}) == "CentOS Linux 7.9.2009"
    assert dq.os_version_string({"name": "Microsoft Windows 11 Pro", "version": "10.0.22631",
                                 "platform": "windows"}) == "Microsoft Windows 11 Pro 10.0.22631"


def test_system_info_ignores_placeholder_serial_and_counts_memory() -> None:
    out = dq.ingest_system_info([{"hardware_serial": "-1", "physical_memory": "1024",
                                  "cpu_logical_cores": "8", "cpu_brand": " Xeon "}], CTX)
    assert out["hardware_serial"] == "" and out["memory"] == 1024
    assert (out["cpu_logical_cores"], out["cpu_brand"]) == (8, "Xeon")
    assert dq.ingest_system_info([], CTX) == {}


def test_osquery_flags_prefer_config_tls_refresh() -> None:
    rows = [{"name": "config_refresh", "value": "30"},
            {"name": "config_tls_refresh", "value": "60"},
            {"name": "distributed_interval", "value": "10"}]
    assert dq.ingest_osquery_flags(rows, CTX) == {"config_tls_refresh": 60,
                                                  "distributed_interval": 10}


def test_network_interface_public_ip_must_parse() -> None:
    rows = [{"address": "10.0.0.5", "mac": "aa:bb"}]
    assert dq.ingest_network_interface(rows, dq.IngestContext("198.51.100.1"))["public_ip"] \
        == "198.51.100.1"
    assert dq.ingest_network_interface(rows, dq.IngestContext("not-an-ip"))["public_ip"] == ""


def test_uptime_in_nanoseconds_and_platform_filtering() -> None:
    assert dq.ingest_uptime([{"total_seconds": "5"}], CTX) == {"uptime": 5_000_000_000}
    linux = dq.queries_for_platform("ubuntu")
    assert "network_interface_unix" in linux
    assert "disk_space_windows" not in linux
    assert "network_interface_windows" in dq.queries_for_platform("windows")


def test_enroll_details_use_the_same_ingest() -> None:
    values, dropped = dq.ingest_enroll_details({
        "system_info": {"hostname": "h", "cpu_brand": ["x"], "physical_memory": 2**70},
        "os_version": "bad"})
    assert values["hostname"] == "h" and "platform" not in values
    assert values["cpu_brand"] == "" and values["memory"] == 2**70  # clipped by the store
    assert dropped == {"system_info": ["cpu_brand"], "os_version": ["<row>"]}


def test_host_status_math() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    seen = now - dt.timedelta(seconds=65)
    assert hoststatus.status(seen, 10, 10, now) == "online"   # 10 + 60 s buffer
    assert hoststatus.status(seen, 0, 10, now) == "offline"   # unknown interval: buffer only
    assert hoststatus.is_missing(now - dt.timedelta(days=30), now)
    assert hoststatus.is_new(now - dt.timedelta(hours=23), now)
