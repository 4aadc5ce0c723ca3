"""The option table of fleet/config.py as typed, frozen sections.

GENERATED from `fleet.config.OPTIONS` by `python -m fleet.config`: do not edit.
`cfg.mysql.address` is a `str` to mypy, and a misspelled option is a type error;
tests/unit/test_config.py fails when this file and the table disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SqliteSection:
    #: SQLite database file used when mysql.address is empty (the embedded default)
    path: str


@dataclass(frozen=True, slots=True)
class MysqlSection:
    #: MySQL/MariaDB host:port; empty selects the embedded SQLite database
    address: str
    #: MySQL protocol
    protocol: str
    #: MySQL user
    username: str
    #: MySQL password
    password: str
    #: file holding the MySQL password
    password_path: str
    #: MySQL database name
    database: str
    #: maximum open MySQL connections
    max_open_conns: int
    #: maximum idle MySQL connections
    max_idle_conns: int
    #: seconds before a MySQL connection is recycled (0 = never)
    conn_max_lifetime: int


@dataclass(frozen=True, slots=True)
class RedisSection:
    #: Redis host:port; empty selects the in-process broker (single server only)
    address: str
    #: Redis ACL user
    username: str
    #: Redis password
    password: str
    #: Redis database number
    database: int
    #: connect to Redis over TLS
    use_tls: bool
    #: Redis connect timeout
    connect_timeout: float
    #: Redis read timeout
    read_timeout: float
    #: maximum Redis connections of the command pool (0 = no limit)
    max_open_conns: int
    #: how long a command waits for a free connection at max_open_conns (0 = up to read_timeout)
    conn_wait_timeout: float


@dataclass(frozen=True, slots=True)
class ServerSection:
    #: address the server listens on
    address: str
    #: TLS certificate (PEM) path
    cert: str
    #: TLS private key (PEM) path
    key: str
    #: serve TLS; false only behind a TLS-terminating proxy (osquery requires TLS)
    tls: bool
    #: TLS profile: modern (TLS 1.3 only) or intermediate (TLS 1.2+)
    tls_compatibility: str
    #: path prefix under which everything is served
    url_prefix: str
    #: HTTP keep-alive
    keepalive: bool
    #: how long a keep-alive connection may wait for its next request (keep it above a load
    #: balancer's idle timeout, e.g. AWS ALB's 60s)
    idle_timeout: float
    #: time a client has to send a request's line and headers (from connecting, or from the
    #: request's first byte)
    read_header_timeout: float
    #: time a client has to send a request body once its headers are in
    read_timeout: float
    #: time a client has to complete the TLS handshake (and to answer the server's TLS close)
    tls_handshake_timeout: float
    #: largest request line plus headers in bytes (431 beyond)
    max_header_bytes: int
    #: most header fields in one request (431 beyond)
    max_header_count: int
    #: open connections per process (websockets included); beyond it a new connection gets 503 and
    #: is closed
    max_connections: int
    #: time a live-query websocket has to authenticate and select its campaign
    websocket_auth_timeout: float
    #: skip the Origin check on the live-query websocket
    websockets_allow_unsafe_origin: bool
    #: largest accepted agent request body in bytes, after gunzip
    max_request_body_size: int
    #: on SIGTERM/SIGINT, how long in-flight requests may finish before the server closes every
    #: connection and exits
    shutdown_timeout: float


@dataclass(frozen=True, slots=True)
class AuthSection:
    #: bcrypt cost of password hashes (4 to 31)
    bcrypt_cost: int
    #: kept for compatibility; bcrypt salts itself
    salt_key_size: int


@dataclass(frozen=True, slots=True)
class SessionSection:
    #: random bytes in a session token
    key_size: int
    #: session lifetime (e.g. 120h)
    duration: float


@dataclass(frozen=True, slots=True)
class OsquerySection:
    #: random bytes in an agent node key
    node_key_size: int
    #: which enroll field identifies a host
    host_identifier: str
    #: refuse re-enrollment of the same host within this window (0 = off)
    enroll_cooldown: float
    #: enrollments in progress per process before new ones get a fast 503 (0 = no limit)
    max_concurrent_enrollments: int
    #: agent requests in progress per process; beyond it an agent request gets an immediate 503 and
    #: osquery retries later, instead of queueing (0 = no limit)
    max_concurrent_requests: int
    #: status log destination
    status_log_plugin: str
    #: result log destination
    result_log_plugin: str
    #: how often host vitals are refreshed
    detail_update_interval: float
    #: how often label queries are run
    label_update_interval: float
    #: how often policy queries are run
    policy_update_interval: float
    #: spread of detail/label refreshes across hosts, in percent of the interval
    max_jitter_percent: int


@dataclass(frozen=True, slots=True)
class FilesystemSection:
    #: status log file path
    status_log_file: str
    #: result log file path
    result_log_file: str


@dataclass(frozen=True, slots=True)
class LoggingSection:
    #: log one JSON object per line
    json: bool
    #: log at debug level
    debug: bool
    #: do not print the start-up banner
    disable_banner: bool


@dataclass(frozen=True, slots=True)
class UpgradesSection:
    #: start even though database migrations are pending
    allow_missing_migrations: bool


@dataclass(frozen=True, slots=True)
class PackagingSection:
    #: insert this global enroll secret at start if none exists
    global_enroll_secret: str


@dataclass(frozen=True, slots=True)
class Sections:
    """Every section, and the options that belong to none."""

    sqlite: SqliteSection
    mysql: MysqlSection
    redis: RedisSection
    server: ServerSection
    auth: AuthSection
    session: SessionSection
    osquery: OsquerySection
    filesystem: FilesystemSection
    logging: LoggingSection
    upgrades: UpgradesSection
    packaging: PackagingSection
    #: how long synchronous live-query REST calls wait for answers
    live_query_rest_period: float


SECTIONS: dict[str, type[Any]] = {
    "sqlite": SqliteSection,
    "mysql": MysqlSection,
    "redis": RedisSection,
    "server": ServerSection,
    "auth": AuthSection,
    "session": SessionSection,
    "osquery": OsquerySection,
    "filesystem": FilesystemSection,
    "logging": LoggingSection,
    "upgrades": UpgradesSection,
    "packaging": PackagingSection,
}
