"""Initial schema: hosts, users, sessions, queries, labels, live-query campaigns.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 20:33:32.128359
"""

import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_config",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "json_value", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "enroll_secrets",
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("secret"),
    )
    op.create_table(
        "host_seen_times",
        sa.Column(
            "host_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "seen_time", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("host_id"),
    )
    with op.batch_alter_table("host_seen_times", schema=None) as batch_op:
        batch_op.create_index("idx_host_seen_times_seen_time", ["seen_time"], unique=False)

    op.create_table(
        "hosts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("osquery_host_id", sa.String(length=255), nullable=False),
        sa.Column("node_key", sa.String(length=255), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "detail_updated_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "label_updated_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "policy_updated_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "last_enrolled_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column("refetch_requested", sa.Boolean(), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("computer_name", sa.String(length=255), nullable=False),
        sa.Column("uuid", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=255), nullable=False),
        sa.Column("platform_like", sa.String(length=255), nullable=False),
        sa.Column("os_version", sa.String(length=255), nullable=False),
        sa.Column("build", sa.String(length=255), nullable=False),
        sa.Column("code_name", sa.String(length=255), nullable=False),
        sa.Column("osquery_version", sa.String(length=255), nullable=False),
        sa.Column("cpu_type", sa.String(length=255), nullable=False),
        sa.Column("cpu_subtype", sa.String(length=255), nullable=False),
        sa.Column("cpu_brand", sa.String(length=255), nullable=False),
        sa.Column("cpu_physical_cores", sa.Integer(), nullable=False),
        sa.Column("cpu_logical_cores", sa.Integer(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("hardware_vendor", sa.String(length=255), nullable=False),
        sa.Column("hardware_model", sa.String(length=255), nullable=False),
        sa.Column("hardware_version", sa.String(length=255), nullable=False),
        sa.Column("hardware_serial", sa.String(length=255), nullable=False),
        sa.Column("uptime", sa.BigInteger(), nullable=False),
        sa.Column("primary_ip", sa.String(length=45), nullable=False),
        sa.Column("primary_mac", sa.String(length=17), nullable=False),
        sa.Column("public_ip", sa.String(length=45), nullable=False),
        sa.Column("distributed_interval", sa.Integer(), nullable=False),
        sa.Column("config_tls_refresh", sa.Integer(), nullable=False),
        sa.Column("logger_tls_period", sa.Integer(), nullable=False),
        sa.Column("gigs_disk_space_available", sa.Float(), nullable=False),
        sa.Column("percent_disk_space_available", sa.Float(), nullable=False),
        sa.Column("gigs_total_disk_space", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_key"),
        sa.UniqueConstraint("osquery_host_id"),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.create_index("idx_hosts_hardware_serial", ["hardware_serial"], unique=False)
        batch_op.create_index("idx_hosts_hostname", ["hostname"], unique=False)
        batch_op.create_index("idx_hosts_uuid", ["uuid"], unique=False)

    op.create_table(
        "labels",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "description", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False
        ),
        sa.Column("query", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("platform", sa.String(length=255), nullable=False),
        sa.Column("label_type", sa.String(length=16), nullable=False),
        sa.Column("label_membership_type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password", sa.LargeBinary(length=255), nullable=False),
        sa.Column("global_role", sa.String(length=64), nullable=True),
        sa.Column("api_only", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("force_password_reset", sa.Boolean(), nullable=False),
        sa.Column("sso_enabled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "label_membership",
        sa.Column("label_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("label_id", "host_id"),
    )
    with op.batch_alter_table("label_membership", schema=None) as batch_op:
        batch_op.create_index("idx_label_membership_host_id", ["host_id"], unique=False)

    op.create_table(
        "queries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "description", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False
        ),
        sa.Column("query", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("team_id_char", sa.String(length=20), nullable=False),
        sa.Column("saved", sa.Boolean(), nullable=False),
        sa.Column("observer_can_run", sa.Boolean(), nullable=False),
        sa.Column("schedule_interval", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=255), nullable=False),
        sa.Column("min_osquery_version", sa.String(length=255), nullable=False),
        sa.Column("automations_enabled", sa.Boolean(), nullable=False),
        sa.Column("logging_type", sa.String(length=64), nullable=False),
        sa.Column("discard_data", sa.Boolean(), nullable=False),
        sa.Column("author_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "team_id_char", name="uq_queries_name_team"),
    )
    op.create_table(
        "sessions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "accessed_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "expires_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "distributed_query_campaigns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column("query_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["query_id"], ["queries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("distributed_query_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            "idx_campaigns_status_created", ["status", "created_at"], unique=False
        )

    op.create_table(
        "distributed_query_campaign_targets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "distributed_query_campaign_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column(
            "target_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["distributed_query_campaign_id"],
            ["distributed_query_campaigns.id"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("distributed_query_campaign_targets", schema=None) as batch_op:
        batch_op.create_index(
            "idx_campaign_targets_campaign", ["distributed_query_campaign_id"], unique=False
        )

    # The built-in label every host belongs to; live queries target it by name.
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    labels = sa.table(
        "labels",
        sa.column("created_at"),
        sa.column("updated_at"),
        sa.column("name"),
        sa.column("description"),
        sa.column("query"),
        sa.column("platform"),
        sa.column("label_type"),
        sa.column("label_membership_type"),
    )
    op.bulk_insert(
        labels,
        [
            {
                "created_at": now,
                "updated_at": now,
                "name": "All Hosts",
                "description": "All hosts which have enrolled in Fleet",
                "query": "SELECT 1;",
                "platform": "",
                "label_type": "builtin",
                "label_membership_type": "dynamic",
            }
        ],
    )
