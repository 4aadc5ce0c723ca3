"""Software inventory: shared software versions and titles, per-host links and installed
paths, precomputed host counts, and `hosts.software_updated_at`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:10:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
BIN16 = sa.LargeBinary(16).with_variant(mysql.BINARY(16), "mysql")
# The identifying fields and widths of fleet/core/software.py at this revision.
WIDTHS = {"name": 255, "version": 255, "source": 64, "browser": 32, "bundle_identifier": 255,
          "release": 64, "vendor": 255, "arch": 16, "extension_id": 255}
TITLE = ("name", "source", "browser", "bundle_identifier")


def _counts(table: str, key: str) -> None:
    op.create_table(
        table,
        sa.Column(key, ID, autoincrement=False, nullable=False),
        sa.Column("team_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hosts_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(key, "team_id"),
    )
    op.create_index(f"idx_{table}_team_count", table, ["team_id", "hosts_count", key])


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.add_column(sa.Column("software_updated_at", TS, nullable=True))
    op.create_table(
        "software_titles",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        *(sa.Column(f, sa.String(length=WIDTHS[f]), nullable=False) for f in TITLE),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(*TITLE, name="uq_software_titles_identity"),
    )
    op.create_table(
        "software",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        *(sa.Column(f, sa.String(length=w), nullable=False) for f, w in WIDTHS.items()),
        sa.Column("title_id", ID, nullable=True),
        sa.Column("checksum", BIN16, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checksum"),
    )
    op.create_index("idx_software_name", "software", ["name"])
    op.create_index("idx_software_title_id", "software", ["title_id"])
    op.create_table(
        "host_software",
        sa.Column("host_id", ID, autoincrement=False, nullable=False),
        sa.Column("software_id", ID, autoincrement=False, nullable=False),
        sa.Column("last_opened_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("host_id", "software_id"),
    )
    op.create_index("idx_host_software_software_id", "host_software", ["software_id"])
    op.create_table(
        "host_software_installed_paths",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("host_id", ID, nullable=False),
        sa.Column("software_id", ID, nullable=False),
        sa.Column("installed_path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_host_software_installed_paths_host",
                    "host_software_installed_paths", ["host_id", "software_id"])
    _counts("software_host_counts", "software_id")
    _counts("software_titles_host_counts", "software_title_id")
