"""OS templates: realistic, deterministic per-host data for simulated agents.

Everything a host reports is derived from ``(template, index, seed)`` with a private
``random.Random`` seeded by a string (string seeds hash with SHA-512, so the data is stable
across processes and ``PYTHONHASHSEED``). Only clock-dependent fields (boot and start times)
also depend on the ``now`` given to :func:`make_host`.

Memory matters with thousands of hosts in one process: the software catalogue is built once
per template and shared; a host stores only the indices of the packages it has. Rows are
treated as read-only everywhere.
"""

from __future__ import annotations

import random
import string
import time
import uuid
from array import array
from dataclasses import dataclass
from functools import cache

Row = dict[str, str]

#: osquery's build-time platform bitmask, sent as a decimal string at enroll.
PLATFORM_TYPES = {"linux": "9", "darwin": "21", "windows": "2"}
#: ``osquery_info.build_distro`` per build platform (cmake/flags.cmake).
BUILD_DISTROS = {"linux": "centos7", "darwin": "10.14", "windows": "10"}
#: (version, weight): mostly current agents, some older ones without the NodeKey header.
OSQUERY_VERSIONS = (("5.23.1", 6), ("5.23.0", 2), ("5.22.1", 1), ("5.21.0", 1))


@dataclass(frozen=True, slots=True)
class OSTemplate:
    """Static description of one OS release."""

    name: str
    family: str  # osquery build platform: linux | darwin | windows
    os_version: Row
    software_source: str  # osquery table holding the main package list


def _linux(version_id: str, full: str, codename: str) -> Row:
    major, minor = version_id.split(".")
    return {
        "_id": version_id, "arch": "x86_64", "build": "", "codename": codename,
        "major": major, "minor": minor, "name": "Ubuntu", "patch": "0",
        "pid_with_namespace": "0", "platform": "ubuntu", "platform_like": "debian",
        "version": full,
    }


def _macos(version: str, build: str) -> Row:
    major, minor, patch = version.split(".")
    return {
        "arch": "arm64", "build": build, "codename": "", "extra": "", "major": major,
        "minor": minor, "name": "macOS", "patch": patch, "platform": "darwin",
        "platform_like": "darwin", "version": version,
    }


def _windows(name: str, build: str, revision: str) -> Row:
    return {
        "arch": "64-bit", "build": build, "codename": name, "install_date": "", "major": "10",
        "minor": "0", "name": name, "patch": "", "platform": "windows",
        "platform_like": "windows", "revision": revision, "version": f"10.0.{build}",
    }


TEMPLATES: dict[str, OSTemplate] = {
    t.name: t
    for t in (
        OSTemplate("ubuntu_22.04", "linux",
                   _linux("22.04", "22.04.4 LTS (Jammy Jellyfish)", "jammy"), "deb_packages"),
        OSTemplate("ubuntu_24.04", "linux",
                   _linux("24.04", "24.04.1 LTS (Noble Numbat)", "noble"), "deb_packages"),
        OSTemplate("macos_14.1.2", "darwin", _macos("14.1.2", "23B92"), "apps"),
        OSTemplate("macos_13.6.2", "darwin", _macos("13.6.2", "22G320"), "apps"),
        OSTemplate("windows_11", "windows",
                   _windows("Microsoft Windows 11 Pro", "22631", "2861"), "programs"),
        OSTemplate("windows_10", "windows",
                   _windows("Microsoft Windows 10 Enterprise", "19045", "3803"), "programs"),
    )
}
ALIASES = {"ubuntu": "ubuntu_22.04", "macos": "macos_14.1.2", "windows": "windows_11"}


def resolve_template(name: str) -> OSTemplate:
    """Return the template for a canonical name or a short alias (``ubuntu``...)."""
    key = ALIASES.get(name, name)
    try:
        return TEMPLATES[key]
    except KeyError:
        known = ", ".join(sorted([*TEMPLATES, *ALIASES]))
        raise ValueError(f"unknown OS template {name!r} (known: {known})") from None


# --- hardware profiles -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Hardware:
    vendor: str
    model: str
    version: str
    cpu_brand: str
    cpu_type: str
    cpu_subtype: str
    cores: tuple[int, int]  # physical, logical
    memory_gb: tuple[int, ...]
    disk_gb: tuple[int, ...]
    serial_len: int  # 0 = empty serial (typical of VMs)
    bios: tuple[str, str, str, str]  # vendor, version, date, firmware_type


_HARDWARE: dict[str, tuple[_Hardware, ...]] = {
    "linux": (
        _Hardware("Dell Inc.", "PowerEdge R640", "", "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz",
                  "x86_64", "85", (20, 40), (64, 128, 256), (480, 960),
                  7, ("Dell Inc.", "2.17.1", "11/10/2022", "uefi")),
        _Hardware("QEMU", "Standard PC (Q35 + ICH9, 2009)", "pc-q35-6.2",
                  "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", "x86_64", "79", (4, 4), (8, 16),
                  (40, 80), 0, ("SeaBIOS", "1.15.0-1", "04/01/2014", "bios")),
        _Hardware("Amazon EC2", "m5.xlarge", "", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
                  "x86_64", "85", (2, 4), (16,), (100, 200), 17,
                  ("Amazon EC2", "1.0", "10/16/2017", "uefi")),
        _Hardware("LENOVO", "20XW0055US", "ThinkPad X1 Carbon Gen 9",
                  "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", "x86_64", "140", (4, 8),
                  (16, 32), (512, 1000), 8, ("LENOVO", "N32ET86W (1.62 )", "05/18/2023", "uefi")),
    ),
    "darwin": (
        _Hardware("Apple Inc.", "MacBookPro18,3", "", "Apple M1 Pro", "arm64e", "ARM64E", (10, 10),
                  (16, 32), (512, 1000), 10, ("Apple Inc.", "10151.41.12", "", "efi")),
        _Hardware("Apple Inc.", "Mac14,2", "", "Apple M2", "arm64e", "ARM64E", (8, 8),
                  (8, 16, 24), (256, 512), 10, ("Apple Inc.", "10151.41.12", "", "efi")),
        _Hardware("Apple Inc.", "Mac14,10", "", "Apple M2 Pro", "arm64e", "ARM64E", (12, 12),
                  (16, 32), (512, 1000), 10, ("Apple Inc.", "10151.41.12", "", "efi")),
        _Hardware("Apple Inc.", "MacBookPro16,1", "1.0",
                  "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", "x86_64h", "Intel x86-64h Haswell",
                  (8, 16), (16, 32), (512, 1000), 12,
                  ("Apple Inc.", "1968.140.7.0.0 (iBridge: 20.16.5061.0.0,0)", "", "efi")),
    ),
    "windows": (
        _Hardware("Dell Inc.", "Latitude 7420", "",
                  "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", "x86_64", "-1", (4, 8),
                  (16, 32), (256, 512), 7, ("Dell Inc.", "1.25.0", "03/14/2023", "uefi")),
        _Hardware("LENOVO", "21CB000CUS", "ThinkPad T14 Gen 3",
                  "12th Gen Intel(R) Core(TM) i7-1265U", "x86_64", "-1", (10, 12), (16, 32),
                  (512,), 8, ("LENOVO", "R23ET65W (1.35 )", "08/02/2023", "uefi")),
        _Hardware("HP", "HP EliteBook 840 G8 Notebook PC", "",
                  "11th Gen Intel(R) Core(TM) i5-1145G7 @ 2.60GHz", "x86_64", "-1", (4, 8),
                  (8, 16), (256, 512), 10, ("HP", "T37 Ver. 01.15.00", "11/07/2023", "uefi")),
        _Hardware("Microsoft Corporation", "Surface Laptop 5", "",
                  "12th Gen Intel(R) Core(TM) i7-1255U", "x86_64", "-1", (10, 12), (16, 32),
                  (512,), 12, ("Microsoft Corporation", "7.105.140", "06/27/2023", "uefi")),
    ),
}

_FIRST = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
          "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
          "yusuf", "zoe", "amara", "bruno", "chen", "dmitri", "elena", "farah", "goran", "hana",
          "isak", "jonas", "keiko", "liam", "maya", "noor", "oscar", "priya", "quinn", "rosa")
_SERVER_ROLES = ("web", "api", "db", "worker", "build", "k8s-node", "cache", "ingest")


def _serial(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_uppercase + string.digits, k=length))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- host data ---------------------------------------------------------------------------------
@dataclass(slots=True)
class HostData:
    """One simulated host's identity and inventory.

    ``osquery_info`` is the only field that changes at run time (its ``config_hash`` and
    ``config_valid`` follow the loaded config, as in osquery).
    """

    template: OSTemplate
    index: int
    seed: int
    rng_key: str  # seeds lazily generated tables (processes, ports...)
    osquery_version: str
    host_identifier: str
    hostname: str  # gethostname(): short name, sent as logs' hostIdentifier source
    uuid: str
    serial: str
    primary_interface: str
    primary_ip: str
    primary_mac: str
    boot_time: int
    disk_total_gb: int
    disk_free_gb: float
    os_version: Row
    osquery_info: Row
    system_info: Row
    platform_info: Row
    users: tuple[Row, ...]
    software_index: array[int]  # indices into the template's shared software catalogue
    unique_software: tuple[tuple[Row, Row], ...]  # (fleet row, native row) only this host has

    @property
    def family(self) -> str:
        return self.template.family

    @property
    def platform_type(self) -> str:
        return PLATFORM_TYPES[self.template.family]

    def host_details(self) -> dict[str, Row]:
        """``host_details`` for the enroll request: first row of each enroll table."""
        return {
            "os_version": self.os_version,
            "osquery_info": self.osquery_info,
            "platform_info": self.platform_info,
            "system_info": self.system_info,
        }

    def software_rows(self) -> list[Row]:
        """Rows as Fleet's ``software_<platform>`` detail query returns them."""
        catalogue = software_catalogue(self.template.name)
        rows = [catalogue[i][0] for i in self.software_index]
        rows.extend(fleet for fleet, _ in self.unique_software)
        return rows

    def native_software_rows(self) -> list[Row]:
        """Rows of the platform's own package table (deb_packages / apps / programs)."""
        catalogue = software_catalogue(self.template.name)
        rows = [catalogue[i][1] for i in self.software_index if catalogue[i][1]]
        rows.extend(native for _, native in self.unique_software)
        return rows


def make_host(
    template: str,
    index: int,
    seed: int,
    *,
    now: float | None = None,
    osquery_version: str | None = None,
) -> HostData:
    """Build host ``index`` of ``template``; identical inputs give identical hosts."""
    tpl = resolve_template(template)
    rng_key = f"{seed}:{tpl.name}:{index}"
    rng = random.Random(rng_key)
    now_i = int(time.time() if now is None else now)
    family = tpl.family
    hw = rng.choice(_HARDWARE[family])
    versions = [v for v, _ in OSQUERY_VERSIONS]
    version = osquery_version or rng.choices(versions, [w for _, w in OSQUERY_VERSIONS])[0]

    hw_uuid = _uuid(rng).upper()
    instance_id = _uuid(rng)
    serial = _serial(rng, hw.serial_len)
    first = rng.choice(_FIRST)
    tag = f"{index:05d}"
    if family == "linux":
        hostname = f"{rng.choice(_SERVER_ROLES)}-{tag}"
        fqdn = f"{hostname}.corp.example"
        computer_name = hostname
        iface = "ens5" if hw.vendor == "Amazon EC2" else "eth0"
    elif family == "darwin":
        kind = "MacBook-Air" if hw.model == "Mac14,2" else "MacBook-Pro"
        hostname = fqdn = f"{first.capitalize()}s-{kind}-{tag}.local"
        computer_name = f"{first.capitalize()}'s {kind.replace('-', ' ')}"
        iface = "en0"
    else:
        hostname = computer_name = f"DESKTOP-{_serial(rng, 7)}"
        fqdn = f"{hostname}.corp.example"
        iface = "Ethernet"
    ip = primary_ip(index)
    mac = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))

    boot_time = now_i - rng.randrange(3_600, 45 * 86_400)
    start_time = now_i - rng.randrange(60, 3_600)
    pid = rng.randrange(400, 60_000)
    memory = rng.choice(hw.memory_gb) * 1024**3
    disk_total = rng.choice(hw.disk_gb)
    disk_free = round(disk_total * rng.uniform(0.08, 0.85), 2)

    os_version = dict(tpl.os_version)
    if family == "darwin" and hw.cpu_type.startswith("x86"):
        os_version["arch"] = "x86_64"
    if family == "windows":
        os_version["install_date"] = str(now_i - rng.randrange(30, 900) * 86_400)
    osquery_info = {
        "build_distro": BUILD_DISTROS[family], "build_platform": family, "config_hash": "",
        "config_valid": "0", "extensions": "inactive", "instance_id": instance_id,
        "pid": str(pid), "platform_mask": PLATFORM_TYPES[family], "start_time": str(start_time),
        "uuid": hw_uuid, "version": version, "watcher": str(pid - 1),
    }
    board_serial = serial if family != "linux" or hw.serial_len else ""
    system_info = {
        "board_model": hw.model if family != "darwin" else "", "board_serial": board_serial,
        "board_vendor": hw.vendor, "board_version": "", "computer_name": computer_name,
        "cpu_brand": hw.cpu_brand, "cpu_logical_cores": str(hw.cores[1]),
        "cpu_microcode": "" if family == "darwin" else f"0x{rng.randrange(1, 0xFF):x}",
        "cpu_physical_cores": str(hw.cores[0]), "cpu_sockets": "1",
        "cpu_subtype": hw.cpu_subtype, "cpu_type": hw.cpu_type,
        "hardware_model": hw.model, "hardware_serial": serial, "hardware_vendor": hw.vendor,
        "hardware_version": hw.version, "hostname": fqdn,
        "local_hostname": hostname if family != "linux" else fqdn,
        "physical_memory": str(memory), "uuid": hw_uuid,
    }
    if family == "windows":
        system_info["emulated_cpu_type"] = "x86_64"
    bios_vendor, bios_version, bios_date, firmware = hw.bios
    platform_info = {
        "date": bios_date, "extra": "", "firmware_type": firmware, "revision": "0.0",
        "vendor": bios_vendor, "version": bios_version,
    }
    if family != "windows":
        platform_info |= {"address": "0xe8000", "size": "98304", "volume_size": "0"}

    # A run of the template's shuffled catalogue order: a random subset of the requested size
    # for a few random draws (rng.sample of ~600 of 1,200 costs ~0.5 ms per host).
    order = _catalogue_order(tpl.name)
    count = rng.randint(200, 1000) - 2
    start_at = rng.randrange(len(order))
    picked = order[start_at: start_at + count]
    picked += order[: count - len(picked)]
    software_index = picked  # in catalogue-order: stable per host, no sort needed

    return HostData(
        template=tpl, index=index, seed=seed, rng_key=rng_key, osquery_version=version,
        host_identifier=instance_id, hostname=hostname, uuid=hw_uuid, serial=serial,
        primary_interface=iface, primary_ip=ip, primary_mac=mac, boot_time=boot_time,
        disk_total_gb=disk_total, disk_free_gb=disk_free, os_version=os_version,
        osquery_info=osquery_info, system_info=system_info, platform_info=platform_info,
        users=_users(rng, family), software_index=software_index,
        unique_software=tuple(_unique_package(rng, tpl, n) for n in range(2)),
    )


def primary_ip(index: int) -> str:
    """A distinct address in 10.0.0.0/8 for each of the first 254 * 65,536 host indices:
    254 hosts per /24 (.1 to .254), never a network or broadcast address."""
    block, host = divmod(index, 254)
    return f"10.{(block >> 8) & 0xFF}.{block & 0xFF}.{host + 1}"


def _users(rng: random.Random, family: str) -> tuple[Row, ...]:
    """System accounts plus one to three people (osquery ``users`` columns)."""
    humans = rng.sample(_FIRST, rng.randint(1, 3))
    rows: list[Row] = []
    if family == "linux":
        for name, uid, shell in (("root", 0, "/bin/bash"), ("daemon", 1, "/usr/sbin/nologin"),
                                 ("www-data", 33, "/usr/sbin/nologin"),
                                 ("nobody", 65534, "/usr/sbin/nologin")):
            rows.append(_user(name, uid, uid, name if uid < 65534 else "nogroup", shell,
                              "/root" if uid == 0 else "/nonexistent", ""))
        for n, name in enumerate(humans):
            uid = 1000 + n
            rows.append(_user(name, uid, uid, name, "/bin/bash", f"/home/{name}", ""))
    elif family == "darwin":
        rows.append(_user("root", 0, 0, "wheel", "/bin/sh", "/var/root", ""))
        rows.append(_user("daemon", 1, 1, "daemon", "/usr/bin/false", "/var/root", ""))
        rows.append(_user("_spotlight", 89, 89, "_spotlight", "/usr/bin/false", "/var/empty", ""))
        rows.append(_user("nobody", -2, -2, "nobody", "/usr/bin/false", "/var/empty", ""))
        for n, name in enumerate(humans):
            rows.append(_user(name, 501 + n, 20, "staff", "/bin/zsh", f"/Users/{name}", ""))
    else:
        shell = "C:\\Windows\\system32\\cmd.exe"
        for name, uid, kind in (("Administrator", 500, "local"), ("Guest", 501, "local"),
                                ("DefaultAccount", 503, "local"), ("SYSTEM", 18, "special")):
            rows.append(_user(name, uid, 513, "Users", shell,
                              f"C:\\Users\\{name}" if kind == "local" else "", kind))
        for n, name in enumerate(humans):
            rows.append(_user(name, 1001 + n, 513, "Users", shell, f"C:\\Users\\{name}", "local"))
    return tuple(rows)


def _user(name: str, uid: int, gid: int, group: str, shell: str, home: str, kind: str) -> Row:
    return {
        "uid": str(uid), "gid": str(gid), "username": name, "description": "",
        "directory": home, "shell": shell, "uuid": "", "type": kind, "groupname": group,
    }


# --- software catalogue ------------------------------------------------------------------------
CATALOGUE_SIZE = 1_200

_DEB_BASE = (
    "adduser apt base-files bash bsdutils coreutils curl dash dbus debconf diffutils dpkg "
    "e2fsprogs findutils gpgv grep gzip hostname init-system-helpers iproute2 iputils-ping less "
    "libacl1 libapparmor1 libattr1 libaudit1 libblkid1 libbz2-1.0 libc-bin libc6 libcap2 "
    "libcom-err2 libcrypt1 libcurl4 libdb5.3 libext2fs2 libffi8 libgcc-s1 libgcrypt20 libgmp10 "
    "libgnutls30 libgpg-error0 libgssapi-krb5-2 libhogweed6 libidn2-0 libk5crypto3 libkeyutils1 "
    "libkrb5-3 liblz4-1 liblzma5 libmount1 libncurses6 libnettle8 libnghttp2-14 libp11-kit0 "
    "libpam-modules libpam0g libpcre2-8-0 libpsl5 libreadline8 libseccomp2 libselinux1 "
    "libsemanage2 libsepol2 libsmartcols1 libsqlite3-0 libss2 libssh-4 libssl3 libstdc++6 "
    "libsystemd0 libtasn1-6 libtinfo6 libudev1 libunistring2 libuuid1 libxxhash0 libzstd1 login "
    "logrotate mawk mount nano ncurses-base ncurses-bin netbase openssh-client openssh-server "
    "openssl passwd perl-base procps python3 python3-apt python3-minimal readline-common rsyslog "
    "sed sensible-utils sudo systemd systemd-sysv sysvinit-utils tar tzdata ubuntu-keyring ucf "
    "util-linux vim vim-common wget zlib1g docker-ce containerd.io git htop jq nginx "
    "postgresql-14 redis-server snapd cron unattended-upgrades ca-certificates gnupg lsof strace "
    "tcpdump unzip zip rsync screen tmux osquery"
).split()
_STEMS = (
    "yaml xml2 json-c glib2.0 gtk-3 qt5core boost icu jpeg-turbo png16 tiff webp ldap sasl2 "
    "pcap usb-1.0 ev event uv1 zmq5 protobuf grpc++ abseil re2 snappy leveldb rocksdb lmdb "
    "sodium argon2 fido2 cbor cjson msgpack toml ini expat pango cairo harfbuzz freetype "
    "fontconfig pixman x11 xcb wayland drm gbm mesa vulkan opus vorbis flac mpg123 lame x264 "
    "x265 avcodec sqlite mariadb pq hiredis mongoc ssh2 git2 archive lzo2 brotli"
).split()
_DEB_PREFIXES = ("lib", "python3-", "golang-", "node-", "ruby-", "fonts-", "r-cran-")
_DEB_SUFFIXES = ("", "-dev", "-doc", "-common", "-data", "-bin", "-utils")

_MAC_APPS = (
    ("Google Chrome", "com.google.Chrome", "Google LLC"),
    ("Firefox", "org.mozilla.firefox", "Mozilla"),
    ("Slack", "com.tinyspeck.slackmacgap", "Slack Technologies"),
    ("zoom.us", "us.zoom.xos", "Zoom Video Communications"),
    ("Visual Studio Code", "com.microsoft.VSCode", "Microsoft Corporation"),
    ("Microsoft Word", "com.microsoft.Word", "Microsoft Corporation"),
    ("Microsoft Excel", "com.microsoft.Excel", "Microsoft Corporation"),
    ("Microsoft Outlook", "com.microsoft.Outlook", "Microsoft Corporation"),
    ("Microsoft Teams", "com.microsoft.teams2", "Microsoft Corporation"),
    ("1Password 7", "com.agilebits.onepassword7", "AgileBits"),
    ("Docker", "com.docker.docker", "Docker Inc."),
    ("iTerm", "com.googlecode.iterm2", "George Nachman"),
    ("Safari", "com.apple.Safari", "Apple Inc."),
    ("Xcode", "com.apple.dt.Xcode", "Apple Inc."),
    ("Keynote", "com.apple.iWork.Keynote", "Apple Inc."),
    ("Numbers", "com.apple.iWork.Numbers", "Apple Inc."),
    ("Pages", "com.apple.iWork.Pages", "Apple Inc."),
    ("Spotify", "com.spotify.client", "Spotify"),
    ("Notion", "notion.id", "Notion Labs"),
    ("Figma", "com.figma.Desktop", "Figma"),
    ("Postman", "com.postmanlabs.mac", "Postman"),
    ("Fleet Desktop", "com.fleetdm.desktop", "Fleet Device Management"),
)
_MAC_WORDS = (
    "Studio Pro Lite Sync Cloud Notes Mail Photo Video Audio Code Term Data Graph Chart Flow "
    "Task Time Track Note Draw Paint Scan Backup Vault Key Pass Shield Guard Monitor Stats Net "
    "Web Drive Share Meet Chat Talk Cast Snap Clip Shot Frame Pixel Vector Font Type"
).split()
_PY_PACKAGES = (
    "requests urllib3 six certifi idna charset-normalizer setuptools pip wheel packaging "
    "pyparsing python-dateutil pytz pyyaml jinja2 markupsafe click attrs cryptography cffi "
    "pycparser numpy pandas boto3 botocore s3transfer jmespath rsa pyasn1 protobuf grpcio"
).split()
_WIN_PROGRAMS = (
    ("Google Chrome", "Google LLC"), ("Mozilla Firefox (x64 en-US)", "Mozilla"),
    ("Microsoft Edge", "Microsoft Corporation"), ("Microsoft Teams", "Microsoft Corporation"),
    ("Microsoft 365 Apps for enterprise - en-us", "Microsoft Corporation"),
    ("Microsoft OneDrive", "Microsoft Corporation"), ("Zoom", "Zoom Video Communications, Inc."),
    ("Slack", "Slack Technologies Inc."), ("7-Zip 23.01 (x64)", "Igor Pavlov"),
    ("Notepad++ (64-bit x64)", "Notepad++ Team"), ("Git", "The Git Development Community"),
    ("Python 3.11.5 (64-bit)", "Python Software Foundation"),
    ("Adobe Acrobat Reader DC", "Adobe Systems Incorporated"),
    ("Microsoft Visual C++ 2015-2022 Redistributable (x64)", "Microsoft Corporation"),
    ("Microsoft Visual C++ 2015-2022 Redistributable (x86)", "Microsoft Corporation"),
    ("VLC media player", "VideoLAN"), ("osquery", "osquery"), ("Fleet osquery", "Fleet Device"),
    ("Dell SupportAssist", "Dell Inc."), ("Intel(R) Graphics Driver", "Intel Corporation"),
)
_WIN_VENDORS = ("Contoso", "Fabrikam", "Northwind", "Adventure Works", "Tailspin", "Litware",
                "Proseware", "Wingtip", "Woodgrove", "Humongous")
_WIN_PRODUCTS = ("Agent", "Client", "Updater", "Runtime", "Toolkit", "Driver Pack", "Manager",
                 "Viewer", "Connector", "Helper", "Service", "SDK", "Launcher", "Sync")


def _version(rng: random.Random) -> str:
    return f"{rng.randint(0, 30)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"


@cache
def _catalogue_order(template: str) -> array[int]:
    """A fixed shuffled order of the template's catalogue indices."""
    order = list(range(len(software_catalogue(template))))
    random.Random(f"catalogue-order:{template}").shuffle(order)
    return array("H", order)


@cache
def software_catalogue(template: str) -> tuple[tuple[Row, Row], ...]:
    """The template's shared package list: (Fleet software row, native table row or {})."""
    tpl = resolve_template(template)
    rng = random.Random(f"catalogue:{tpl.name}")
    entries: list[tuple[Row, Row]] = []
    if tpl.family == "linux":
        names = list(_DEB_BASE)
        extra = [p + s + x for p in _DEB_PREFIXES for s in _STEMS for x in _DEB_SUFFIXES]
        rng.shuffle(extra)
        names += extra[: CATALOGUE_SIZE - len(names)]
        for name in names:
            version = f"{_version(rng)}-{rng.randint(1, 9)}ubuntu{rng.randint(0, 4)}"
            entries.append(_deb(name, version, rng))
    elif tpl.family == "darwin":
        apps = {name: (bundle, vendor) for name, bundle, vendor in _MAC_APPS}
        while len(apps) < CATALOGUE_SIZE * 2 // 3:
            a, b = rng.sample(_MAC_WORDS, 2)
            vendor = rng.choice(_WIN_VENDORS)
            apps.setdefault(f"{a} {b}", (f"com.{vendor.replace(' ', '')}.{a}{b}".lower(), vendor))
        for name, (bundle, vendor) in apps.items():
            entries.append(_app(name, bundle, vendor, _version(rng), rng))
        for stem in _STEMS + _DEB_BASE:
            if len(entries) >= CATALOGUE_SIZE:
                break
            source = "homebrew_packages" if rng.random() < 0.7 else "python_packages"
            entries.append((_fleet(stem, _version(rng), source), {}))
    else:
        programs = list(_WIN_PROGRAMS)
        programs += [(f"{v} {p} {n}", f"{v} Corporation") for v in _WIN_VENDORS
                     for p in _WIN_PRODUCTS for n in range(1, 10)]
        for name, publisher in programs[: CATALOGUE_SIZE - len(_PY_PACKAGES)]:
            entries.append(_program(name, publisher, _version(rng), rng))
    for name in _PY_PACKAGES:
        if len(entries) < CATALOGUE_SIZE:
            entries.append((_fleet(name, _version(rng), "python_packages"), {}))
    return tuple(entries[:CATALOGUE_SIZE])


def _fleet(name: str, version: str, source: str, *, bundle: str = "", vendor: str = "",
           arch: str = "", path: str = "") -> Row:
    return {
        "name": name, "version": version, "source": source, "bundle_identifier": bundle,
        "extension_id": "", "browser": "", "release": "", "vendor": vendor, "arch": arch,
        "installed_path": path, "last_opened_at": "",
    }


def _deb(name: str, version: str, rng: random.Random) -> tuple[Row, Row]:
    native = {
        "name": name, "version": version, "source": name.split("-")[0],
        "size": str(rng.randint(20, 40_000)), "arch": "amd64",
        "revision": version.rsplit("-", 1)[-1], "status": "install ok installed",
        "maintainer": "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
        "section": rng.choice(("libs", "utils", "admin", "net", "python", "devel", "doc")),
        "priority": "optional", "admindir": "/var/lib/dpkg",
    }
    return _fleet(name, version, "deb_packages", arch="amd64"), native


def _app(name: str, bundle: str, vendor: str, version: str,
         rng: random.Random) -> tuple[Row, Row]:
    path = f"/Applications/{name}.app"
    native = {
        "name": f"{name}.app", "path": path, "bundle_executable": name.split()[0],
        "bundle_identifier": bundle, "bundle_name": name, "bundle_short_version": version,
        "bundle_version": str(rng.randint(1, 9999)), "bundle_package_type": "APPL",
        "display_name": name, "category": "public.app-category.productivity",
        "copyright": f"Copyright © {vendor}", "minimum_system_version": "11.0",
        "last_opened_time": "-1.0",
    }
    return _fleet(name, version, "apps", bundle=bundle, vendor=vendor, path=path), native


def _program(name: str, publisher: str, version: str,
             rng: random.Random) -> tuple[Row, Row]:
    location = f"C:\\Program Files\\{name.split(' (')[0]}\\"
    native = {
        "name": name, "version": version, "install_location": location, "install_source": "",
        "language": "1033", "publisher": publisher,
        "uninstall_string": f'MsiExec.exe /X{{{str(uuid.UUID(int=rng.getrandbits(128))).upper()}}}',
        "install_date": f"2023{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "identifying_number": "",
    }
    return _fleet(name, version, "programs", vendor=publisher, path=location), native


def _unique_package(rng: random.Random, tpl: OSTemplate, n: int) -> tuple[Row, Row]:
    """Software only this host has (Fleet's osquery-perf ``unique_software_count``)."""
    name = f"internal-tool-{rng.getrandbits(32):08x}-{n}"
    version = _version(rng)
    if tpl.family == "linux":
        return _deb(name, version + "-1", rng)
    if tpl.family == "darwin":
        return _app(name, f"com.example.{name}", "Example Corp", version, rng)
    return _program(name, "Example Corp", version, rng)
