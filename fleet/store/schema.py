"""Table definitions (SQLAlchemy Core) shared by SQLite and MySQL/MariaDB.

This module describes the schema as the code uses it; the migrations under `migrations/`
create it. Column names follow Fleet's where a table exists in Fleet, so queries, API fields
and operator habits carry over.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from fleet.core.software import TITLE_IDENTITY as SOFTWARE_TITLE_IDENTITY
from fleet.core.software import WIDTHS as SOFTWARE_WIDTHS

metadata = sa.MetaData()

# Auto-increment primary keys: BIGINT on MySQL, INTEGER (rowid alias) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Microsecond timestamps on MySQL (DATETIME defaults to whole seconds there). Stored as UTC.
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


def _str(n: int = 255) -> sa.String:
    return sa.String(n)


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def max_chars(column: sa.Column[Any]) -> int:
    """The most characters a VARCHAR column holds (MySQL refuses longer values)."""
    assert isinstance(column.type, sa.String) and column.type.length, column
    return int(column.type.length)


def max_int(column: sa.Column[Any]) -> int:
    """The largest value an integer column holds on MySQL (INT or BIGINT)."""
    assert isinstance(column.type, sa.Integer), column
    return INT64_MAX if isinstance(column.type, sa.BigInteger) else INT32_MAX


hosts = sa.Table(
    "hosts", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("osquery_host_id", _str(), nullable=False, unique=True),
    sa.Column("node_key", _str(), nullable=True, unique=True),
    sa.Column("team_id", sa.Integer, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("detail_updated_at", TS, nullable=False),
    sa.Column("label_updated_at", TS, nullable=False),
    sa.Column("policy_updated_at", TS, nullable=False),
    sa.Column("last_enrolled_at", TS, nullable=False),
    sa.Column("refetch_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("hostname", _str(), nullable=False, default=""),
    sa.Column("computer_name", _str(), nullable=False, default=""),
    sa.Column("uuid", _str(), nullable=False, default=""),
    sa.Column("platform", _str(), nullable=False, default=""),
    sa.Column("platform_like", _str(), nullable=False, default=""),
    sa.Column("os_version", _str(), nullable=False, default=""),
    sa.Column("build", _str(), nullable=False, default=""),
    sa.Column("code_name", _str(), nullable=False, default=""),
    sa.Column("osquery_version", _str(), nullable=False, default=""),
    sa.Column("cpu_type", _str(), nullable=False, default=""),
    sa.Column("cpu_subtype", _str(), nullable=False, default=""),
    sa.Column("cpu_brand", _str(), nullable=False, default=""),
    sa.Column("cpu_physical_cores", sa.Integer, nullable=False, default=0),
    sa.Column("cpu_logical_cores", sa.Integer, nullable=False, default=0),
    sa.Column("memory", sa.BigInteger, nullable=False, default=0),
    sa.Column("hardware_vendor", _str(), nullable=False, default=""),
    sa.Column("hardware_model", _str(), nullable=False, default=""),
    sa.Column("hardware_version", _str(), nullable=False, default=""),
    sa.Column("hardware_serial", _str(), nullable=False, default=""),
    sa.Column("uptime", sa.BigInteger, nullable=False, default=0),
    sa.Column("primary_ip", _str(45), nullable=False, default=""),
    sa.Column("primary_mac", _str(17), nullable=False, default=""),
    sa.Column("public_ip", _str(45), nullable=False, default=""),
    sa.Column("distributed_interval", sa.Integer, nullable=False, default=0),
    sa.Column("config_tls_refresh", sa.Integer, nullable=False, default=0),
    sa.Column("logger_tls_period", sa.Integer, nullable=False, default=0),
    sa.Column("gigs_disk_space_available", sa.Float, nullable=False, default=0.0),
    sa.Column("percent_disk_space_available", sa.Float, nullable=False, default=0.0),
    sa.Column("gigs_total_disk_space", sa.Float, nullable=False, default=0.0),
    sa.Column("software_updated_at", TS, nullable=True),
    sa.Index("idx_hosts_hostname", "hostname"),
    sa.Index("idx_hosts_uuid", "uuid"),
    sa.Index("idx_hosts_hardware_serial", "hardware_serial"),
)

# Seen times live apart from `hosts` so the constant stream of check-ins only ever touches
# this narrow table (batched), never the wide host row.
host_seen_times = sa.Table(
    "host_seen_times", metadata,
    sa.Column("host_id", ID, primary_key=True, autoincrement=False),
    sa.Column("seen_time", TS, nullable=False),
    sa.Index("idx_host_seen_times_seen_time", "seen_time"),
)

enroll_secrets = sa.Table(
    "enroll_secrets", metadata,
    sa.Column("secret", _str(), primary_key=True),
    sa.Column("team_id", sa.Integer, nullable=True),
    sa.Column("created_at", TS, nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("name", _str(), nullable=False, default=""),
    sa.Column("email", _str(), nullable=False, unique=True),
    sa.Column("password", sa.LargeBinary(255), nullable=False),
    sa.Column("global_role", _str(64), nullable=True),
    sa.Column("api_only", sa.Boolean, nullable=False, default=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("force_password_reset", sa.Boolean, nullable=False, default=False),
    sa.Column("sso_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("position", _str(), nullable=False, default=""),
)

# Session tokens are stored as SHA-256 digests: a leaked table does not leak usable tokens.
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key_hash", _str(64), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("accessed_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)

app_config = sa.Table(
    "app_config", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("json_value", TEXT, nullable=False),
)

queries = sa.Table(
    "queries", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("name", _str(), nullable=False),
    sa.Column("description", TEXT, nullable=False),
    sa.Column("query", TEXT, nullable=False),
    sa.Column("team_id", sa.Integer, nullable=True),
    # '' for global queries: lets one unique index cover (name, team) on both dialects.
    sa.Column("team_id_char", _str(20), nullable=False, default=""),
    sa.Column("saved", sa.Boolean, nullable=False, default=True),
    sa.Column("observer_can_run", sa.Boolean, nullable=False, default=False),
    sa.Column("schedule_interval", sa.Integer, nullable=False, default=0),
    sa.Column("platform", _str(), nullable=False, default=""),
    sa.Column("min_osquery_version", _str(), nullable=False, default=""),
    sa.Column("automations_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("logging_type", _str(64), nullable=False, default="snapshot"),
    sa.Column("discard_data", sa.Boolean, nullable=False, default=False),
    sa.Column("author_id", ID, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.UniqueConstraint("name", "team_id_char", name="uq_queries_name_team"),
)

labels = sa.Table(
    "labels", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("name", _str(), nullable=False, unique=True),
    sa.Column("description", TEXT, nullable=False),
    sa.Column("query", TEXT, nullable=False),
    sa.Column("platform", _str(), nullable=False, default=""),
    sa.Column("label_type", _str(16), nullable=False, default="regular"),
    sa.Column("label_membership_type", _str(16), nullable=False, default="dynamic"),
)

label_membership = sa.Table(
    "label_membership", metadata,
    sa.Column("label_id", ID, sa.ForeignKey("labels.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("host_id", ID, primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("idx_label_membership_host_id", "host_id"),
)

distributed_query_campaigns = sa.Table(
    "distributed_query_campaigns", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("query_id", ID, sa.ForeignKey("queries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.Integer, nullable=False, default=0),
    sa.Column("user_id", ID, nullable=True),
    sa.Index("idx_campaigns_status_created", "status", "created_at"),
)

distributed_query_campaign_targets = sa.Table(
    "distributed_query_campaign_targets", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("distributed_query_campaign_id", ID,
              sa.ForeignKey("distributed_query_campaigns.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("type", sa.Integer, nullable=False),
    sa.Column("target_id", ID, nullable=False),
    sa.Index("idx_campaign_targets_campaign", "distributed_query_campaign_id"),
)

# Fleet's schedule locks: one row per lock name, held by `owner` (a process's random
# instance id) until `expires_at`. Taken by extending one's own row, stealing an expired
# one, or inserting the first; released by setting `expires_at` to now.
locks = sa.Table(
    "locks", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("name", _str(), nullable=False, unique=True),
    sa.Column("owner", _str(), nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)

# Fleet's run history of named schedules. `stats_type` is scheduled or triggered; `status`
# pending (queued or running), completed, expired (its instance died) or canceled (its
# instance shut down). `instance` is "" while a triggered run waits for a lock holder.
# `errors` is a JSON object {job name: error} or NULL.
cron_stats = sa.Table(
    "cron_stats", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("name", _str(), nullable=False),
    sa.Column("instance", _str(), nullable=False),
    sa.Column("stats_type", _str(64), nullable=False),
    sa.Column("status", _str(64), nullable=False),
    sa.Column("errors", TEXT, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("idx_cron_stats_name_created_at", "name", "created_at"),
)

# Software inventory (Fleet's tables). A `software` row is one version of one piece of
# software, shared by every host that has it and found by the md5 `checksum` of its
# identifying fields (core/software.py); hosts link to it. Host counts are kept by a
# periodic job (team_id 0: all hosts), never counted per request.
BIN16 = sa.LargeBinary(16).with_variant(mysql.BINARY(16), "mysql")
software_titles = sa.Table(
    "software_titles", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    *(sa.Column(f, _str(SOFTWARE_WIDTHS[f]), nullable=False, default="")
      for f in SOFTWARE_TITLE_IDENTITY),
    sa.UniqueConstraint(*SOFTWARE_TITLE_IDENTITY, name="uq_software_titles_identity"),
)

software = sa.Table(
    "software", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    *(sa.Column(f, _str(w), nullable=False, default="") for f, w in SOFTWARE_WIDTHS.items()),
    sa.Column("title_id", ID, nullable=True),
    sa.Column("checksum", BIN16, nullable=False, unique=True),
    sa.Index("idx_software_name", "name"),
    sa.Index("idx_software_title_id", "title_id"),
)

host_software = sa.Table(
    "host_software", metadata,
    sa.Column("host_id", ID, primary_key=True, autoincrement=False),
    sa.Column("software_id", ID, primary_key=True, autoincrement=False),
    sa.Column("last_opened_at", TS, nullable=True),
    sa.Index("idx_host_software_software_id", "software_id"),
)

host_software_installed_paths = sa.Table(
    "host_software_installed_paths", metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("host_id", ID, nullable=False),
    sa.Column("software_id", ID, nullable=False),
    sa.Column("installed_path", sa.Text, nullable=False),
    sa.Index("idx_host_software_installed_paths_host", "host_id", "software_id"),
)

software_host_counts = sa.Table(
    "software_host_counts", metadata,
    sa.Column("software_id", ID, primary_key=True, autoincrement=False),
    sa.Column("team_id", sa.Integer, primary_key=True, autoincrement=False, default=0),
    sa.Column("hosts_count", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("idx_software_host_counts_team_count", "team_id", "hosts_count", "software_id"),
)

software_titles_host_counts = sa.Table(
    "software_titles_host_counts", metadata,
    sa.Column("software_title_id", ID, primary_key=True, autoincrement=False),
    sa.Column("team_id", sa.Integer, primary_key=True, autoincrement=False, default=0),
    sa.Column("hosts_count", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("idx_software_titles_host_counts_team_count", "team_id", "hosts_count",
             "software_title_id"),
)

host_users = sa.Table(
    "host_users", metadata,
    sa.Column("host_id", ID, primary_key=True, autoincrement=False),
    sa.Column("uid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("username", _str(), primary_key=True),
    sa.Column("user_type", _str(), nullable=False),
    sa.Column("groupname", _str(), nullable=False),
    sa.Column("shell", _str(), nullable=False),
)

# Every table with a `host_id` column: deleting a host deletes its rows in each (a test
# checks that none is missing, so a new per-host table cannot leave orphans behind).
HOST_CHILD_TABLES: tuple[sa.Table, ...] = (host_seen_times, label_membership, host_software,
                                           host_software_installed_paths, host_users)
