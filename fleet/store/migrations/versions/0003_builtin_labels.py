"""Fleet's built-in labels besides "All Hosts" (which 0001 created): the platform labels,
dynamic, with Fleet's names, descriptions and queries. Their platform is '' as in Fleet since
2021 (a host that changes OS is re-evaluated by every built-in), Fedora's excepted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:00:00
"""

import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (name, description, query, platform); the data as of this revision, not the app's code.
BUILTINS = (
    ("macOS", "All macOS hosts", "SELECT 1 FROM os_version WHERE platform = 'darwin';", ""),
    ("Ubuntu Linux", "All Ubuntu hosts",
     "SELECT 1 FROM os_version WHERE platform = 'ubuntu';", ""),
    ("CentOS Linux", "All CentOS hosts",
     "SELECT 1 FROM os_version WHERE platform = 'centos' OR name LIKE '%centos%';", ""),
    ("MS Windows", "All Windows hosts",
     "SELECT 1 FROM os_version WHERE platform = 'windows';", ""),
    ("Red Hat Linux", "All Red Hat Enterprise Linux hosts",
     "SELECT 1 FROM os_version WHERE name LIKE '%red hat%';", ""),
    ("All Linux", "All Linux distributions",
     "SELECT 1 FROM osquery_info WHERE build_platform LIKE '%ubuntu%' "
     "OR build_distro LIKE '%centos%';", ""),
    ("Fedora Linux", "All Fedora hosts",
     "SELECT 1 FROM os_version WHERE name = 'Fedora Linux';", "rhel"),
)


def upgrade() -> None:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    labels = sa.table(
        "labels", sa.column("created_at"), sa.column("updated_at"), sa.column("name"),
        sa.column("description"), sa.column("query"), sa.column("platform"),
        sa.column("label_type"), sa.column("label_membership_type"))
    op.bulk_insert(labels, [
        {"created_at": now, "updated_at": now, "name": name, "description": description,
         "query": query, "platform": platform, "label_type": "builtin",
         "label_membership_type": "dynamic"}
        for name, description, query, platform in BUILTINS])
