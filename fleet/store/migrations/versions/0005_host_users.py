"""Host users: each host's local users, from the `users` detail query
(`features.enable_host_users`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "host_users",
        sa.Column("host_id", ID, autoincrement=False, nullable=False),
        sa.Column("uid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("user_type", sa.String(length=255), nullable=False),
        sa.Column("groupname", sa.String(length=255), nullable=False),
        sa.Column("shell", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("host_id", "uid", "username"),
    )


def downgrade() -> None:
    op.drop_table("host_users")
