"""The migrations and `fleet/store/schema.py` describe the same schema (Warehouse's db-check):
a column, index or table added to one and not the other fails here, on both backends,
before the first real upgrade would."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import mysql

from fleet.service.context import ServiceContext
from fleet.store.schema import metadata


def _compare_type(_context: Any, _inspected: Any, _column: Any, inspected_type: Any,
                  metadata_type: Any) -> bool | None:
    """MySQL stores `BLOB(n)` as the smallest BLOB type holding n bytes (TINYBLOB up to 255),
    which is the same column; anything else gets Alembic's own comparison."""
    if isinstance(metadata_type, sa.LargeBinary) and isinstance(inspected_type, mysql.TINYBLOB):
        return not (metadata_type.length or 0) <= 255
    return None


def _drift(conn: Any) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": _compare_type})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_schema_py(ctx: ServiceContext) -> None:
    async with ctx.db.connect() as conn:
        drift = await conn.run_sync(_drift)
    assert drift == [], "schema.py and the migrations disagree (add a migration):\n" + \
        "\n".join(map(str, drift))
