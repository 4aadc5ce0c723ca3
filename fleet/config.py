"""Server configuration: ONE table of options, from which everything else is derived.

Every option has a dotted key (`mysql.address`). From it come the command-line flag
(`--mysql_address`), the environment variable (`FLEET_MYSQL_ADDRESS`) and the YAML file key
(`mysql: {address: ...}`), exactly as in Fleet. Precedence: flag > env > file > default.
Values are parsed and validated once, at start, so a bad value fails with a message that names
the option and every way it could have been set.

The table also generates `fleet/config_sections.py` (`python -m fleet.config`): one frozen
dataclass per section, so `cfg.osquery.enroll_cooldown` is a `float` to mypy and a misspelled
option is a type error. `Config` is frozen; `Config.with_overrides` makes a changed copy.
"""

from __future__ import annotations

import argparse
import os
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from fleet.config_sections import SECTIONS, Sections
from fleet.logdest import DESTINATIONS

REDACTED = "********"


class ConfigError(Exception):
    """A configuration value is invalid; the message names the option."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(text: str | int | float) -> float:
    """Seconds from a Go-style duration (`30s`, `1h30m`, `500ms`) or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        return float(text)
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 120h)")
    return total


def format_duration(seconds: float) -> str:
    """Go-style duration that `parse_duration` reads back: 432000 -> `120h`, 90 -> `1m30s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs = round(secs, 6)
    return ((f"{int(hours)}h" if hours else "") + (f"{int(minutes)}m" if minutes else "")
            + (f"{secs:g}s" if secs else ""))


def parse_bool(value: str | bool | int) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_int(value: str | int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an integer") from None


def parse_str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError(f"{value!r} is not a string")
    return "" if value is None else str(value)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "str": parse_str, "int": parse_int, "bool": parse_bool, "duration": parse_duration,
}


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # str | int | bool | duration
    default: Any
    help: str
    secret: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    metavar: str = ""  # shown in --help; derived from the kind and key when empty

    @property
    def flag(self) -> str:
        return "--" + self.key.replace(".", "_")

    @property
    def env(self) -> str:
        return "FLEET_" + self.key.replace(".", "_").upper()

    def parse(self, value: Any) -> Any:
        parsed = _PARSERS[self.kind](value)
        if self.choices and parsed not in self.choices:
            raise ValueError(f"{parsed!r} is not one of {', '.join(self.choices)}")
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not low <= parsed <= high:
            raise ValueError(f"{parsed!r} is out of range (allowed: {low:g} to {high:g})")
        if low is not None and parsed < low:
            raise ValueError(f"{parsed!r} is below the minimum of {low:g}")
        if high is not None and parsed > high:
            raise ValueError(f"{parsed!r} is above the maximum of {high:g}")
        return parsed

    def show(self, value: Any) -> Any:
        """The value as a user writes it: durations Go-style (`120h`), the rest unchanged."""
        return format_duration(value) if self.kind == "duration" else value

    @property
    def help_metavar(self) -> str:
        if self.metavar:
            return self.metavar
        if self.choices:
            return "{" + ",".join(self.choices) + "}"
        leaf = self.key.rpartition(".")[2]
        if self.kind == "str" and leaf == "address":
            return "HOST:PORT"
        if self.kind == "str" and (leaf in ("path", "cert", "key")
                                   or leaf.endswith(("_path", "_file"))):
            return "PATH"
        return {"str": "TEXT"}.get(self.kind, self.kind.upper())


# Every registered log destination, so a plugin name no destination answers to is refused.
_LOG_PLUGINS = tuple(DESTINATIONS)

OPTIONS: tuple[Option, ...] = (
    # Embedded database (our addition; Fleet has no embedded mode).
    Option("sqlite.path", "str", "fleet.db",
           "SQLite database file used when mysql.address is empty (the embedded default)"),
    # MySQL
    Option("mysql.address", "str", "",
           "MySQL/MariaDB host:port; empty selects the embedded SQLite database"),
    Option("mysql.protocol", "str", "tcp", "MySQL protocol", choices=("tcp",)),
    Option("mysql.username", "str", "fleet", "MySQL user"),
    Option("mysql.password", "str", "", "MySQL password", secret=True),
    Option("mysql.password_path", "str", "", "file holding the MySQL password"),
    Option("mysql.database", "str", "fleet", "MySQL database name"),
    Option("mysql.max_open_conns", "int", 50, "maximum open MySQL connections", minimum=1),
    Option("mysql.max_idle_conns", "int", 50, "maximum idle MySQL connections", minimum=0),
    Option("mysql.conn_max_lifetime", "int", 0,
           "seconds before a MySQL connection is recycled (0 = never)", minimum=0),
    # Redis
    Option("redis.address", "str", "",
           "Redis host:port; empty selects the in-process broker (single server only)"),
    Option("redis.username", "str", "", "Redis ACL user"),
    Option("redis.password", "str", "", "Redis password", secret=True),
    Option("redis.database", "int", 0, "Redis database number", minimum=0),
    Option("redis.use_tls", "bool", False, "connect to Redis over TLS"),
    Option("redis.connect_timeout", "duration", 5.0, "Redis connect timeout", minimum=0),
    Option("redis.read_timeout", "duration", 10.0, "Redis read timeout", minimum=0),
    Option("redis.max_open_conns", "int", 0,
           "maximum Redis connections of the command pool (0 = no limit)", minimum=0),
    Option("redis.conn_wait_timeout", "duration", 0.0,
           "how long a command waits for a free connection at max_open_conns "
           "(0 = up to read_timeout)", minimum=0),
    # Server
    Option("server.address", "str", "0.0.0.0:8080", "address the server listens on"),
    Option("server.cert", "str", "", "TLS certificate (PEM) path"),
    Option("server.key", "str", "", "TLS private key (PEM) path"),
    Option("server.tls", "bool", True,
           "serve TLS; false only behind a TLS-terminating proxy (osquery requires TLS)"),
    Option("server.tls_compatibility", "str", "intermediate",
           "TLS profile: modern (TLS 1.3 only) or intermediate (TLS 1.2+)",
           choices=("modern", "intermediate")),
    Option("server.url_prefix", "str", "", "path prefix under which everything is served",
           metavar="/PREFIX"),
    Option("server.keepalive", "bool", True, "HTTP keep-alive"),
    Option("server.idle_timeout", "duration", 75.0,
           "how long a keep-alive connection may wait for its next request (keep it above a "
           "load balancer's idle timeout, e.g. AWS ALB's 60s)", minimum=1),
    Option("server.read_header_timeout", "duration", 5.0,
           "time a client has to send a request's line and headers (from connecting, or "
           "from the request's first byte)", minimum=0.1),
    Option("server.read_timeout", "duration", 25.0,
           "time a client has to send a request body once its headers are in", minimum=0.1),
    Option("server.tls_handshake_timeout", "duration", 10.0,
           "time a client has to complete the TLS handshake (and to answer the server's TLS "
           "close)", minimum=0.1),
    Option("server.max_header_bytes", "int", 256 << 10,
           "largest request line plus headers in bytes (431 beyond)", minimum=4096),
    Option("server.max_header_count", "int", 100,
           "most header fields in one request (431 beyond)", minimum=16),
    Option("server.max_connections", "int", 10000,
           "open connections per process (websockets included); beyond it a new connection "
           "gets 503 and is closed", minimum=16),
    Option("server.websocket_auth_timeout", "duration", 5.0,
           "time a live-query websocket has to authenticate and select its campaign",
           minimum=0.1),
    Option("server.websockets_allow_unsafe_origin", "bool", False,
           "skip the Origin check on the live-query websocket"),
    Option("server.max_request_body_size", "int", 8 << 20,
           "largest accepted agent request body in bytes, after gunzip", minimum=1024),
    Option("server.shutdown_timeout", "duration", 5.0,
           "on SIGTERM/SIGINT, how long in-flight requests may finish before the server "
           "closes every connection and exits", minimum=0),
    # Auth and sessions
    Option("auth.bcrypt_cost", "int", 12, "bcrypt cost of password hashes (4 to 31)", minimum=4,
           maximum=31),
    Option("auth.salt_key_size", "int", 24, "kept for compatibility; bcrypt salts itself",
           minimum=1),
    Option("session.key_size", "int", 64, "random bytes in a session token", minimum=16),
    Option("session.duration", "duration", 5 * 86400.0, "session lifetime (e.g. 120h)",
           minimum=60),
    # osquery
    Option("osquery.node_key_size", "int", 24, "random bytes in an agent node key", minimum=8),
    Option("osquery.host_identifier", "str", "provided",
           "which enroll field identifies a host",
           choices=("provided", "instance", "uuid", "hostname")),
    Option("osquery.enroll_cooldown", "duration", 0.0,
           "refuse re-enrollment of the same host within this window (0 = off)", minimum=0),
    Option("osquery.max_concurrent_enrollments", "int", 64,
           "enrollments in progress per process before new ones get a fast 503 (0 = no limit)",
           minimum=0),
    Option("osquery.max_concurrent_requests", "int", 1000,
           "agent requests in progress per process; beyond it an agent request gets an "
           "immediate 503 and osquery retries later, instead of queueing (0 = no limit)",
           minimum=0),
    Option("osquery.status_log_plugin", "str", "filesystem", "status log destination",
           choices=_LOG_PLUGINS),
    Option("osquery.result_log_plugin", "str", "filesystem", "result log destination",
           choices=_LOG_PLUGINS),
    Option("osquery.detail_update_interval", "duration", 3600.0,
           "how often host vitals are refreshed", minimum=1),
    Option("osquery.label_update_interval", "duration", 3600.0,
           "how often label queries are run", minimum=1),
    Option("osquery.policy_update_interval", "duration", 3600.0,
           "how often policy queries are run", minimum=1),
    Option("osquery.max_jitter_percent", "int", 10,
           "spread of detail/label refreshes across hosts, in percent of the interval",
           minimum=0),
    # Log destinations
    Option("filesystem.status_log_file", "str", "/tmp/osquery_status", "status log file path"),
    Option("filesystem.result_log_file", "str", "/tmp/osquery_result", "result log file path"),
    # Logging
    Option("logging.json", "bool", False, "log one JSON object per line"),
    Option("logging.debug", "bool", False, "log at debug level"),
    Option("logging.disable_banner", "bool", False, "do not print the start-up banner"),
    # Upgrades and packaging
    Option("upgrades.allow_missing_migrations", "bool", False,
           "start even though database migrations are pending"),
    Option("packaging.global_enroll_secret", "str", "",
           "insert this global enroll secret at start if none exists", secret=True),
    # Live queries
    Option("live_query_rest_period", "duration", 25.0,
           "how long synchronous live-query REST calls wait for answers", minimum=1),
)

OPTIONS_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}


@dataclass(frozen=True, slots=True)
class Config(Sections):
    """Effective configuration: typed sections (`cfg.mysql.address`), plus every value by
    dotted key and where it came from. Frozen: `with_overrides` makes a changed copy."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def get(self, key: str) -> Any:
        return self.values[key]

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "override") -> Config:
        """This configuration with some dotted keys set, parsed and validated as at start
        (e.g. the `--dev` certificate paths, or a test's setting)."""
        values = _apply_overrides(dict(self.values), overrides)
        _post_validate(values)
        return _build(values, {**self.sources, **dict.fromkeys(overrides, source)})

    def redacted(self) -> dict[str, Any]:
        """Nested dict of every option, secrets replaced, for `fleet config_dump`."""
        out: dict[str, Any] = {}
        for opt in OPTIONS:
            value = self.values[opt.key]
            if opt.secret and value:
                value = REDACTED
            node = out
            *parents, leaf = opt.key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = opt.show(value)
        return out


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per option (default None, so absence is distinguishable) plus --config."""
    parser.add_argument("-c", "--config", dest="config_file", default=None, metavar="PATH",
                        help="YAML configuration file")
    group = parser.add_argument_group("configuration options (also FLEET_* env vars)")
    for opt in OPTIONS:
        default = opt.show(opt.default)
        if isinstance(default, bool):
            default = str(default).lower()
        shown = f" (default {default})" if default != "" else ""
        kwargs: dict[str, Any] = {"dest": "opt__" + opt.key, "default": None,
                                  "metavar": opt.help_metavar,
                                  "help": (opt.help + shown).replace("%", "%%")}
        if opt.kind == "bool":
            kwargs.update(nargs="?", const="true")
        group.add_argument(opt.flag, **kwargs)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in OPTIONS_BY_KEY:
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must be a YAML mapping of sections")
    flat = _flatten(data)
    unknown = sorted(set(flat) - set(OPTIONS_BY_KEY))
    if unknown:
        raise ConfigError(f"config file {path}: unknown option(s): {', '.join(unknown)}")
    return flat


def load(args: argparse.Namespace | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every option by precedence flag > env > file > default, then validate."""
    env = os.environ if environ is None else environ
    flags = {k[len("opt__"):]: v for k, v in vars(args or argparse.Namespace()).items()
             if k.startswith("opt__") and v is not None}
    config_file = getattr(args, "config_file", None) or env.get("FLEET_CONFIG")
    from_file = _read_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.key in flags:
            raw, source = flags[opt.key], f"flag {opt.flag}"
        elif opt.env in env:
            raw, source = env[opt.env], f"env {opt.env}"
        elif opt.key in from_file:
            raw, source = from_file[opt.key], f"file key {opt.key}"
        else:
            values[opt.key], sources[opt.key] = opt.default, "default"
            continue
        try:
            values[opt.key] = opt.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {opt.key} (from {source}): {exc}") from None
        sources[opt.key] = source
    _post_validate(values)
    return _build(values, sources)


def _post_validate(values: dict[str, Any]) -> None:
    prefix = values["server.url_prefix"].strip()
    if prefix:
        prefix = "/" + prefix.strip("/")
        if not re.fullmatch(r"(?:/[a-zA-Z0-9_.~-]+)+", prefix):
            raise ConfigError(
                f"invalid value for server.url_prefix: {values['server.url_prefix']!r} "
                "(path segments of letters, digits, _ . ~ - only)")
    values["server.url_prefix"] = prefix
    address = values["server.address"]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid value for server.address: {address!r} (expected host:port)")
    if values["mysql.password_path"] and not values["mysql.password"]:
        try:
            with open(values["mysql.password_path"], encoding="utf-8") as fh:
                values["mysql.password"] = fh.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"invalid value for mysql.password_path: cannot read it: {exc.strerror}"
            ) from None


def _build(values: dict[str, Any], sources: dict[str, str]) -> Config:
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    top: dict[str, Any] = {}
    for key, value in values.items():
        section, dot, leaf = key.partition(".")
        if dot:
            sections[section][leaf] = value
        else:
            top[key] = value
    return Config(**{name: SECTIONS[name](**fields) for name, fields in sections.items()},
                  **top, values=MappingProxyType(values), sources=MappingProxyType(sources))


def _apply_overrides(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key, raw in overrides.items():
        if key not in OPTIONS_BY_KEY:
            raise ConfigError(f"unknown option {key}")
        try:
            values[key] = OPTIONS_BY_KEY[key].parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {key}: {exc}") from None
    return values


def from_mapping(overrides: Mapping[str, Any] | None = None) -> Config:
    """Config from defaults plus dotted-key overrides (for tests and embedding), no env."""
    values = _apply_overrides({o.key: o.default for o in OPTIONS}, overrides or {})
    _post_validate(values)
    return _build(values, {k: "override" for k in values})


_PY_TYPES = {"str": "str", "int": "int", "bool": "bool", "duration": "float"}
SECTIONS_MODULE = Path(__file__).with_name("config_sections.py")


def sections_source() -> str:
    """The text of `fleet/config_sections.py`: one frozen dataclass per section of OPTIONS."""
    sections: dict[str, list[Option]] = {}
    top: list[Option] = []
    for opt in OPTIONS:
        section, dot, leaf = opt.key.partition(".")
        if "." in leaf:
            raise ValueError(f"{opt.key}: options nest one section deep at most")
        if dot:
            sections.setdefault(section, []).append(opt)
        else:
            top.append(opt)

    def field(name: str, kind: str, help_text: str) -> list[str]:
        comment = textwrap.wrap(help_text, 100 - len("    #: "))
        return [*(f"    #: {line}" for line in comment), f"    {name}: {kind}"]

    def cls(name: str) -> str:
        return name.title().replace("_", "") + "Section"

    out = ['"""The option table of fleet/config.py as typed, frozen sections.',
           "",
           "GENERATED from `fleet.config.OPTIONS` by `python -m fleet.config`: do not edit.",
           "`cfg.mysql.address` is a `str` to mypy, and a misspelled option is a type error;",
           "tests/unit/test_config.py fails when this file and the table disagree.",
           '"""', "", "from __future__ import annotations", "", "from dataclasses import dataclass",
           "from typing import Any", ""]
    for section, opts in sections.items():
        out += ["", "@dataclass(frozen=True, slots=True)", f"class {cls(section)}:"]
        for opt in opts:
            out += field(opt.key.partition(".")[2], _PY_TYPES[opt.kind], opt.help)
        out.append("")
    out += ["", "@dataclass(frozen=True, slots=True)", "class Sections:",
            '    """Every section, and the options that belong to none."""', ""]
    for section in sections:
        out.append(f"    {section}: {cls(section)}")
    for opt in top:
        out += field(opt.key, _PY_TYPES[opt.kind], opt.help)
    out += ["", "", "SECTIONS: dict[str, type[Any]] = {"]
    out += [f'    "{section}": {cls(section)},' for section in sections]
    out += ["}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    SECTIONS_MODULE.write_text(sections_source())
    print(f"wrote {SECTIONS_MODULE}")
