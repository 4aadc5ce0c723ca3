"""Fake osquery tables: plausible rows generated from a host's data.

The simulator has no SQLite. Each generated table is a function of the host and the clock;
tables osquery has on a platform but we do not generate return no rows, and tables the
platform lacks are unknown ("no such table"), as in osquery. All values are strings.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import NamedTuple

from osquery_perf.templates import HostData, Row


class Ctx(NamedTuple):
    """What a table needs: the host, the current time and the agent's live flag values."""

    host: HostData
    now: float
    flags: Mapping[str, str]


TableFn = Callable[[Ctx], list[Row]]

_COMMON = (
    "arp_cache augeas azure_instance_metadata carves certificates chrome_extensions cpu_info "
    "curl curl_certificate ec2_instance_metadata etc_hosts file firefox_addons groups hash "
    "interface_addresses interface_details kernel_info listening_ports logged_in_users "
    "memory_info os_version osquery_events osquery_extensions osquery_flags osquery_info "
    "osquery_packs osquery_registry osquery_schedule platform_info process_open_sockets "
    "processes python_packages routes ssh_configs startup_items system_info time uptime "
    "user_ssh_keys users vscode_extensions yara"
).split()
_PLATFORM_TABLES = {
    "linux": _COMMON + (
        "apt_sources authorized_keys block_devices crontab deb_packages disk_encryption "
        "docker_containers docker_images iptables kernel_modules mounts npm_packages "
        "portage_packages rpm_packages selinux_settings shadow sudoers systemd_units "
        "process_events socket_events"
    ).split(),
    "darwin": _COMMON + (
        "account_policy_data alf apps authorized_keys battery crontab disk_encryption "
        "es_process_events gatekeeper homebrew_packages keychain_items launchd "
        "managed_policies mounts npm_packages plist preferences safari_extensions sip_config "
        "sudoers xprotect_entries"
    ).split(),
    "windows": _COMMON + (
        "appcompat_shims autoexec battery bitlocker_info chocolatey_packages drivers "
        "ie_extensions logical_drives ntfs_acl_permissions patches programs registry services "
        "windows_crashes windows_eventlog windows_optional_features windows_security_center "
        "windows_update_history wmi_cli_event_consumers"
    ).split(),
}


@cache
def table_names(family: str) -> frozenset[str]:
    """Tables an osquery build for ``family`` has (a realistic subset of the real list)."""
    return frozenset(_PLATFORM_TABLES[family])


def table_rows(table: str, ctx: Ctx) -> list[Row] | None:
    """Rows of ``table`` on this host, or None when the platform has no such table."""
    if table not in table_names(ctx.host.family):
        return None
    fn = TABLES.get(table)
    return fn(ctx) if fn else []


# --- generators --------------------------------------------------------------------------------
def visible(row: Row) -> Row:
    """Drop hidden columns (``_id``, ``pid_with_namespace``), which ``SELECT *`` omits."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "pid_with_namespace"}


def uptime_rows(ctx: Ctx) -> list[Row]:
    total = max(0, int(ctx.now) - ctx.host.boot_time)
    return [{
        "days": str(total // 86_400), "hours": str(total // 3_600 % 24),
        "minutes": str(total // 60 % 60), "seconds": str(total % 60),
        "total_seconds": str(total),
    }]


def _time(ctx: Ctx) -> list[Row]:
    now = int(ctx.now)
    t = time.gmtime(now)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", t)
    return [{
        "weekday": time.strftime("%A", t), "year": str(t.tm_year), "month": str(t.tm_mon),
        "day": str(t.tm_mday), "hours": str(t.tm_hour), "minutes": str(t.tm_min),
        "seconds": str(t.tm_sec), "timezone": "UTC", "local_timezone": "UTC",
        "unix_time": str(now), "timestamp": time.asctime(t) + " UTC", "datetime": iso,
        "iso_8601": iso,
    }]


def _osquery_flags(ctx: Ctx) -> list[Row]:
    return [{"name": k, "value": v, "description": "", "default_value": "", "type": "",
             "shell_only": "0"} for k, v in ctx.flags.items()]


def _registry(ctx: Ctx) -> list[Row]:
    return [{"registry": "table", "name": name, "owner_uuid": "0", "internal": "0",
             "active": "1"} for name in sorted(table_names(ctx.host.family))]


def _kernel_info(ctx: Ctx) -> list[Row]:
    host = ctx.host
    if host.family == "linux":
        version = "6.5.0-1014-aws" if host.template.name.endswith("24.04") else "5.15.0-91-generic"
        return [{"version": version, "arguments": "ro quiet splash", "path": "/boot/vmlinuz",
                 "device": "/dev/sda1"}]
    if host.family == "darwin":
        return [{"version": "23.1.0", "arguments": "", "path": "", "device": ""}]
    return [{"version": host.os_version["version"] + "." + host.os_version["revision"],
             "arguments": "", "path": "C:\\Windows\\system32\\ntoskrnl.exe", "device": ""}]


def _interface_addresses(ctx: Ctx) -> list[Row]:
    host = ctx.host
    loopback = "1" if host.family == "windows" else ("lo0" if host.family == "darwin" else "lo")
    iface = host.primary_interface
    return [
        {"interface": loopback, "address": "127.0.0.1", "mask": "255.0.0.0",
         "broadcast": "", "point_to_point": "127.0.0.1", "type": "unknown",
         "friendly_name": "Loopback Pseudo-Interface 1" if host.family == "windows" else ""},
        {"interface": iface, "address": host.primary_ip, "mask": "255.255.0.0",
         "broadcast": host.primary_ip.rsplit(".", 2)[0] + ".255.255", "point_to_point": "",
         "type": "dhcp" if host.family == "windows" else "unknown",
         "friendly_name": iface if host.family == "windows" else ""},
    ]


def _interface_details(ctx: Ctx) -> list[Row]:
    host = ctx.host
    return [{"interface": host.primary_interface, "mac": host.primary_mac, "type": "6",
             "mtu": "1500", "flags": "4163", "link_speed": "1000"}]


_PROCESSES = {
    "linux": ("systemd", "kthreadd", "systemd-journald", "systemd-udevd", "systemd-resolved",
              "systemd-networkd", "cron", "dbus-daemon", "rsyslogd", "sshd", "agetty",
              "containerd", "dockerd", "nginx", "postgres", "redis-server", "python3", "bash",
              "osqueryd", "snapd", "unattended-upgr", "polkitd", "node", "java"),
    "darwin": ("launchd", "logd", "UserEventAgent", "fseventsd", "mds", "mds_stores",
               "WindowServer", "loginwindow", "Dock", "Finder", "SystemUIServer", "cfprefsd",
               "trustd", "sharingd", "bluetoothd", "airportd", "coreaudiod", "Google Chrome",
               "Slack", "zsh", "osqueryd", "Code Helper", "mdworker_shared", "nsurlsessiond"),
    "windows": ("System", "Registry", "smss.exe", "csrss.exe", "wininit.exe", "services.exe",
                "lsass.exe", "svchost.exe", "svchost.exe", "svchost.exe", "winlogon.exe",
                "dwm.exe", "explorer.exe", "SearchHost.exe", "RuntimeBroker.exe",
                "MsMpEng.exe", "spoolsv.exe", "chrome.exe", "Teams.exe", "OneDrive.exe",
                "osqueryd.exe", "conhost.exe", "taskhostw.exe", "ctfmon.exe"),
}
_PORTS = {
    "linux": (("sshd", 22, "6"), ("systemd-resolved", 53, "17"), ("nginx", 80, "6"),
              ("nginx", 443, "6"), ("postgres", 5432, "6"), ("redis-server", 6379, "6")),
    "darwin": (("launchd", 22, "6"), ("sharingd", 5353, "17"), ("rapportd", 49152, "6")),
    "windows": (("svchost.exe", 135, "6"), ("System", 445, "6"), ("lsass.exe", 49664, "6"),
                ("spoolsv.exe", 49668, "6")),
}


def _path(family: str, name: str) -> str:
    if family == "windows":
        return f"C:\\Windows\\System32\\{name}"
    if family == "darwin":
        return f"/usr/libexec/{name}"
    return f"/usr/sbin/{name}"


def _etc_hosts(ctx: Ctx) -> list[Row]:
    """The stock loopback entries (macOS adds broadcasthost) plus the host's own name."""
    host = ctx.host
    rows = [{"address": "127.0.0.1", "hostnames": "localhost"},
            {"address": "::1", "hostnames": "localhost"}]
    if host.family == "darwin":
        rows.insert(1, {"address": "255.255.255.255", "hostnames": "broadcasthost"})
    rows.append({"address": host.primary_ip, "hostnames": host.hostname})
    return rows


def _processes(ctx: Ctx) -> list[Row]:
    host = ctx.host
    rng = random.Random(host.rng_key + ":processes")
    rows = []
    pid = 1
    for name in _PROCESSES[host.family]:
        pid += rng.randint(1, 400)
        start = host.boot_time + rng.randint(0, 3_600)
        path = _path(host.family, name)
        rows.append({
            "pid": str(pid), "name": name, "path": path, "cmdline": path, "state": "S",
            "cwd": "/", "root": "/", "uid": "0", "gid": "0", "euid": "0", "egid": "0",
            "on_disk": "1", "parent": "1", "pgroup": str(pid), "threads": str(rng.randint(1, 40)),
            "nice": "0", "resident_size": str(rng.randint(1, 400) * 1_048_576),
            "total_size": str(rng.randint(400, 4_000) * 1_048_576),
            "user_time": str(rng.randint(0, 90_000)), "system_time": str(rng.randint(0, 30_000)),
            "start_time": str(start),
        })
    return rows


def _listening_ports(ctx: Ctx) -> list[Row]:
    by_name = {row["name"]: row["pid"] for row in _processes(ctx)}
    return [{
        "pid": by_name.get(name, "-1"), "port": str(port), "protocol": proto,
        "family": "2", "address": "0.0.0.0", "fd": str(3 + n), "socket": str(20_000 + n),
        "path": "", "net_namespace": "0",
    } for n, (name, port, proto) in enumerate(_PORTS[ctx.host.family])]


def _mounts(ctx: Ctx) -> list[Row]:
    host = ctx.host
    block = 4096
    blocks = host.disk_total_gb * 1024**3 // block
    free = int(host.disk_free_gb * 1024**3) // block
    return [{"device": "/dev/sda1", "device_alias": "/dev/sda1", "path": "/",
             "type": "apfs" if host.family == "darwin" else "ext4", "blocks_size": str(block),
             "blocks": str(blocks), "blocks_free": str(free), "blocks_available": str(free),
             "inodes": "0", "inodes_free": "0", "flags": "rw"}]


def _logical_drives(ctx: Ctx) -> list[Row]:
    host = ctx.host
    return [{"device_id": "C:", "type": "Local Disk", "description": "Local Fixed Disk",
             "free_space": str(int(host.disk_free_gb * 1024**3)),
             "size": str(host.disk_total_gb * 1024**3), "file_system": "NTFS",
             "boot_partition": "1"}]


TABLES: dict[str, TableFn] = {
    "apps": lambda c: c.host.native_software_rows(),
    "deb_packages": lambda c: c.host.native_software_rows(),
    "etc_hosts": _etc_hosts,
    "programs": lambda c: c.host.native_software_rows(),
    "interface_addresses": _interface_addresses,
    "interface_details": _interface_details,
    "kernel_info": _kernel_info,
    "listening_ports": _listening_ports,
    "logical_drives": _logical_drives,
    "mounts": _mounts,
    "os_version": lambda c: [visible(c.host.os_version)],
    "osquery_flags": _osquery_flags,
    "osquery_info": lambda c: [c.host.osquery_info],
    "osquery_registry": _registry,
    "platform_info": lambda c: [c.host.platform_info],
    "processes": _processes,
    "system_info": lambda c: [c.host.system_info],
    "time": _time,
    "uptime": uptime_rows,
    "users": lambda c: list(c.host.users),
}
