"""osquery configuration served to agents: Fleet's default agent options and pack shapes."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Fleet's agent options for a new install (`config` part; `overrides` start empty).
DEFAULT_AGENT_OPTIONS: dict[str, Any] = {
    "config": {
        "options": {
            "pack_delimiter": "/",
            "logger_tls_period": 10,
            "distributed_plugin": "tls",
            "disable_distributed": False,
            "logger_tls_endpoint": "/api/osquery/log",
            "distributed_interval": 10,
            "distributed_tls_max_attempts": 3,
        },
        "decorators": {
            "load": [
                "SELECT uuid AS host_uuid FROM system_info;",
                "SELECT hostname AS hostname FROM system_info;",
            ],
        },
    },
    "overrides": {},
}

INTERVAL_OPTIONS = ("distributed_interval", "logger_tls_period", "config_tls_refresh")


def config_for_platform(agent_options: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """The osquery config for one platform: a platform override replaces `config` whole."""
    overrides = agent_options.get("overrides") or {}
    platforms = overrides.get("platforms") or {} if isinstance(overrides, Mapping) else {}
    chosen = platforms.get(platform) if isinstance(platforms, Mapping) else None
    base = chosen if isinstance(chosen, Mapping) else agent_options.get("config") or {}
    return copy.deepcopy(dict(base))


def query_content(row: Any) -> dict[str, Any]:
    """A saved query as an osquery pack entry (Fleet's QueryContent)."""
    content: dict[str, Any] = {
        "query": row.query, "interval": row.schedule_interval,
        "platform": row.platform, "version": row.min_osquery_version,
    }
    if row.logging_type == "snapshot":
        content["snapshot"] = True
    else:
        content["removed"] = row.logging_type == "differential"
    return content


def lenient_int(value: Any) -> int | None:
    """Option values may be numbers or numeric strings (Fleet casts leniently)."""
    if isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
