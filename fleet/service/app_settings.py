"""`GET/PATCH /config`: the app config document with its defaults, the server's read-only
facts beside it, and merging changes into it (`core/app_config.py` says how)."""

from __future__ import annotations

from typing import Any

from fleet.config import Config
from fleet.core import app_config
from fleet.core.authz import GLOBAL, Action, Viewer, authorize
from fleet.service.context import ServiceContext
from fleet.store import app_config as store

NANOSECONDS = 1_000_000_000


def _read_only(cfg: Config) -> dict[str, Any]:
    """What Fleet echoes of the server's own configuration (not changeable by PATCH)."""
    def destination(kind: str) -> dict[str, Any]:
        plugin = getattr(cfg.osquery, f"{kind}_log_plugin")
        file = getattr(cfg.filesystem, f"{kind}_log_file") if plugin == "filesystem" else ""
        return {"plugin": plugin, "config": {"status_log_file" if kind == "status"
                                             else "result_log_file": file}
                if file else None}

    return {
        "license": {"tier": "free", "expiration": None},
        "logging": {"debug": cfg.logging.debug, "json": cfg.logging.json,
                    "result": destination("result"), "status": destination("status")},
        "update_interval": {
            "osquery_detail": int(cfg.osquery.detail_update_interval * NANOSECONDS),
            "osquery_policy": int(cfg.osquery.policy_update_interval * NANOSECONDS)},
    }


def _shown(ctx: ServiceContext, doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, **_read_only(ctx.cfg)}


async def get_config(ctx: ServiceContext, viewer: Viewer) -> dict[str, Any]:
    authorize(viewer, Action.READ_APP_CONFIG, GLOBAL)
    async with ctx.db.connect() as conn:
        return _shown(ctx, app_config.full(await store.get_app_config(conn)))


async def modify_config(ctx: ServiceContext, viewer: Viewer, patch: Any, *,
                        dry_run: bool = False) -> dict[str, Any]:
    """Merge `patch` into the document (nothing is saved unless all of it is valid; with
    `dry_run`, nothing at all)."""
    authorize(viewer, Action.WRITE_APP_CONFIG, GLOBAL)
    async with ctx.db.begin() as conn:
        doc = app_config.merged(await store.get_app_config(conn), patch)
        if dry_run:
            return _shown(ctx, doc)
        await store.save_app_config(conn, doc)
    await ctx.settings_changed()
    await ctx.agent_config_changed()  # agents are configured from the org's settings
    return _shown(ctx, doc)
