"""Agent enrollment: verify the secret, pick the identifier, issue a node key."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fleet.core.agent_values import clean_text, describe_dropped, short
from fleet.core.detail_queries import ingest_enroll_details
from fleet.core.errors import NodeInvalid
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost, unix_seconds
from fleet.store import hosts as host_store
from fleet.store import secrets as secret_store

log = logging.getLogger("fleet.enrollment")

# osquery.host_identifier mode -> (host_details table, column) holding the identifier.
_IDENTIFIER_SOURCES = {
    "instance": ("osquery_info", "instance_id"),
    "uuid": ("osquery_info", "uuid"),
    "hostname": ("system_info", "hostname"),
}


def host_identifier(mode: str, provided: str, host_details: Mapping[str, Any]) -> str:
    """The identifier that decides whether an enrolling agent is a known host.

    Like Fleet, a mode whose detail is missing falls back to the provided identifier.
    """
    source = _IDENTIFIER_SOURCES.get(mode)
    if source is not None:
        table = host_details.get(source[0])
        if isinstance(table, Mapping):
            value = table.get(source[1])
            if isinstance(value, str) and value:
                return value
    return provided


def new_node_key(size: int) -> str:
    """`size` random bytes, standard base64 (24 bytes -> 32 characters, as Fleet)."""
    return base64.b64encode(secrets.token_bytes(size)).decode()


async def enroll(ctx: ServiceContext, *, enroll_secret: str,
                 provided_identifier: str, host_details: Mapping[str, Any]) -> str:
    """Enroll or re-enroll a host; returns its new node key. Failures are NodeInvalid.

    The host row gets the check-in intervals of its config right away, so the agent's first
    config fetch has nothing to write, and this instance's host cache is primed with it, so
    the first check-in needs no lookup. Both matter in an enrollment storm.
    """
    secret = None
    if enroll_secret:
        async with ctx.db.connect() as conn:
            secret = await secret_store.find_secret(conn, enroll_secret)
    if secret is None:
        raise NodeInvalid("enroll failed: invalid enroll secret")
    identifier = host_identifier(ctx.cfg.osquery.host_identifier, provided_identifier,
                                 host_details)
    if not identifier:
        raise NodeInvalid("enroll failed: no host identifier")
    identifier = host_store.clip({"osquery_host_id": clean_text(identifier)})["osquery_host_id"]
    node_key = new_node_key(ctx.cfg.osquery.node_key_size)
    vitals, dropped = ingest_enroll_details(host_details)
    if any(dropped.values()):
        log.warning("enrolling host %s sent values that are not osquery column values, "
                    "dropped: %s", short(identifier), describe_dropped(dropped))
    intervals = await ctx.agent_config.intervals_for(ctx.db, secret.team_id,
                                                     vitals.get("platform", ""))
    values = host_store.clip({**vitals, **intervals})
    try:
        enrolled = await host_store.enroll(
            ctx.db, osquery_host_id=identifier, node_key=node_key, team_id=secret.team_id,
            cooldown_seconds=ctx.cfg.osquery.enroll_cooldown, values=values)
    except host_store.EnrollCooldown as exc:
        raise NodeInvalid(f"save enroll failed: {exc}", name="enroll_cooldown") from None
    ctx.seen.record(enrolled.host_id)
    if not enrolled.created:
        # The old node key must stop working on every instance right away.
        await ctx.host_changed(enrolled.host_id)
        return node_key
    ctx.host_cache.put(CachedHost(
        id=enrolled.host_id, node_key=node_key, osquery_host_id=identifier,
        hostname=values.get("hostname", ""), platform=values.get("platform", ""),
        team_id=secret.team_id, detail_updated_at=unix_seconds(host_store.NEVER),
        label_updated_at=unix_seconds(host_store.NEVER), refetch_requested=False,
        distributed_interval=values.get("distributed_interval", 0),
        config_tls_refresh=values.get("config_tls_refresh", 0),
        logger_tls_period=values.get("logger_tls_period", 0)))
    return node_key
