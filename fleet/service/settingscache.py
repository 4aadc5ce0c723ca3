"""In-process cache of the app config settings the server acts on (`features`, host
expiry): the detail family reads them on every due check-in, so they come from memory.

Changes through any instance are announced on the broker (`ServiceContext.settings_changed`)
and drop the value everywhere; CACHE_SECONDS is the safety net for a lost announcement.
"""

from __future__ import annotations

from fleet.core.app_config import Settings, settings
from fleet.service.reloading import Reloading
from fleet.store import app_config as store
from fleet.store.db import Database

CACHE_SECONDS = 60.0


class SettingsCache:
    def __init__(self) -> None:
        self._settings: Reloading[Settings] = Reloading()

    def invalidate(self) -> None:
        self._settings.invalidate()

    async def get(self, db: Database) -> Settings:
        """The current settings (the last known ones while the database is away)."""
        async def load() -> Settings:
            async with db.connect() as conn:
                return settings(await store.get_app_config(conn))
        return await self._settings.get(load, CACHE_SECONDS)
