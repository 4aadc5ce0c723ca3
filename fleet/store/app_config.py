"""The app config document: one JSON object in `app_config` row 1, shaped like Fleet's
AppConfig (`org_info`, `server_settings`, ...)."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.store.db import upsert
from fleet.store.schema import app_config

_ROW_ID = 1


async def get_app_config(conn: AsyncConnection) -> dict[str, Any]:
    """The stored document, or {} before anything was saved."""
    stmt = sa.select(app_config.c.json_value).where(app_config.c.id == _ROW_ID)
    raw = (await conn.execute(stmt)).scalar_one_or_none()
    value = orjson.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {}


async def save_app_config(conn: AsyncConnection, value: dict[str, Any]) -> None:
    await upsert(conn, app_config, [{"id": _ROW_ID, "json_value": orjson.dumps(value).decode()}],
                 keys=["id"], update=["json_value"])
