"""Forward-only schema migrations (Alembic), shared by SQLite and MySQL.

`fleet prepare db` applies them; `fleet serve` only checks that none is pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from fleet.store.db import Database

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


@dataclass(frozen=True)
class MigrationStatus:
    applied: tuple[str, ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]  # applied in the database but unknown to this binary

    @property
    def initialized(self) -> bool:
        return bool(self.applied)

    @property
    def complete(self) -> bool:
        return not self.missing


def _alembic_config(conn: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def _status(conn: Connection) -> MigrationStatus:
    script = ScriptDirectory.from_config(_alembic_config())
    current = set(MigrationContext.configure(conn).get_current_heads())
    known = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    applied: set[str] = set()
    for head in current & set(known):
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    return MigrationStatus(
        applied=tuple(r for r in known if r in applied),
        missing=tuple(r for r in known if r not in applied),
        unknown=tuple(sorted(current - set(known))),
    )


async def migration_status(db: Database) -> MigrationStatus:
    async with db.connect() as conn:
        return await conn.run_sync(_status)


async def apply_migrations(db: Database) -> MigrationStatus:
    """Apply every pending migration; a no-op when the schema is current."""
    async with db.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "head"))
    return await migration_status(db)
