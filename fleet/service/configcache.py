"""In-process cache of the osquery config agents fetch, keyed by (team, platform).

Agents refetch their config every `config_refresh` seconds, so the expensive part (agent
options and the `Global` pack from the database) is loaded once per team and shared by
every host of a platform; per request only the interval bookkeeping remains. Changes made
through any instance (agent options, saved queries, packs) are announced on the broker (see
`ServiceContext.agent_config_changed`) and drop the snapshots everywhere at once; the
CACHE_SECONDS age limit is the safety net for an announcement lost in a broker outage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet.core import agent_options as ao
from fleet.service.reloading import Reloading
from fleet.store import app_config as app_config_store
from fleet.store import schedule as schedule_store
from fleet.store.db import Database

CACHE_SECONDS = 5.0


@dataclass
class _Snapshot:
    """What one team's hosts are configured from, and the configs built from it."""

    agent_options: dict[str, Any]
    global_pack: dict[str, Any]
    automations: dict[str, bool]
    by_platform: dict[str, dict[str, Any]] = field(default_factory=dict)


class AgentConfigCache:
    """Agent options + scheduled queries per team, reloaded when announced changed or at
    most every CACHE_SECONDS (and the last snapshot served while the database is away, so
    agents keep their config and their logs keep flowing to file destinations)."""

    def __init__(self) -> None:
        self._snaps: dict[int | None, Reloading[_Snapshot]] = {}

    async def _snapshot(self, db: Database, team_id: int | None) -> _Snapshot:
        snap = self._snaps.get(team_id)
        if snap is None:
            snap = self._snaps[team_id] = Reloading()

        async def load() -> _Snapshot:
            # Teams have no options or packs of their own yet: every team gets the global
            # ones.
            async with db.connect() as conn:
                app_cfg = await app_config_store.get_app_config(conn)
                rows = await schedule_store.global_scheduled_queries(conn)
                automations = await schedule_store.global_query_automations(conn)
            return _Snapshot(
                agent_options=app_cfg.get("agent_options") or ao.DEFAULT_AGENT_OPTIONS,
                global_pack={r.name: ao.query_content(r) for r in rows},
                automations=automations)
        return await snap.get(load, CACHE_SECONDS)

    def invalidate(self, team_id: int | None = None) -> None:
        """Stop serving what may predate a change: of one team, or of all (None: a global
        change, which every team inherits). Kept only as the outage fallback."""
        for team, snap in self._snaps.items():
            if team_id is None or team == team_id:
                snap.invalidate()

    async def config_for(self, db: Database, team_id: int | None,
                         platform: str) -> dict[str, Any]:
        snap = await self._snapshot(db, team_id)
        cfg = snap.by_platform.get(platform)
        if cfg is None:
            cfg = ao.config_for_platform(snap.agent_options, platform)
            if snap.global_pack:
                cfg["packs"] = {"Global": {"queries": snap.global_pack}}
            snap.by_platform[platform] = cfg
        return cfg

    async def intervals_for(self, db: Database, team_id: int | None,
                            platform: str) -> dict[str, int]:
        """The check-in intervals (host columns) the config of (team, platform) sets."""
        options = (await self.config_for(db, team_id, platform)).get("options")
        if not isinstance(options, dict):
            return {}
        out: dict[str, int] = {}
        for name in ao.INTERVAL_OPTIONS:
            value = ao.lenient_int(options.get(name))
            if value is not None:
                out[name] = value
        return out

    async def forwards_results(self, db: Database, team_id: int | None, log_name: str) -> bool:
        """Whether a result log line goes to the destination (Fleet's filtering rule).

        Lines of queries Fleet does not know (other packs, schedules configured elsewhere)
        are always forwarded; lines of known queries only when automations are enabled.
        """
        snap = await self._snapshot(db, team_id)
        parts = log_name.split("/")
        if len(parts) == 3 and parts[0] == "pack" and parts[1] == "Global":
            return snap.automations.get(parts[2], True)
        return True
