"""Live-query target selection (Fleet's `POST /targets` and `/targets/count`): the hosts and
labels matching a search text, and how many hosts a selection reaches, online or not.

Selections resolve exactly as a campaign's do (`store.campaigns`): explicit hosts, members of
the labels, every host for "All Hosts", within the hosts the viewer may read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from fleet.core.authz import GLOBAL, Action, Viewer, authorize, authorize_any
from fleet.core.campaigns import Totals
from fleet.core.hosts import HostFilter, HostValues
from fleet.core.labels import Label
from fleet.service.campaigns import tally
from fleet.service.context import ServiceContext
from fleet.store import campaigns as campaign_store
from fleet.store import host_search
from fleet.store import labels as label_store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions

# Hosts a search lists at most (as Fleet's target picker).
SEARCH_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Targets:
    hosts: Sequence[HostValues]
    labels: Sequence[Label]
    totals: Totals
    now: dt.datetime


async def count_targets(ctx: ServiceContext, viewer: Viewer, host_ids: Sequence[int],
                        label_ids: Sequence[int]) -> Totals:
    teams = authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        facts = await campaign_store.selected_seen_facts(conn, host_ids, label_ids, teams)
    return tally(facts, utcnow())


async def search_targets(ctx: ServiceContext, viewer: Viewer, text: str,
                         host_ids: Sequence[int], label_ids: Sequence[int]) -> Targets:
    """Hosts (hostname, uuid, serial or IP) and labels (name) matching `text` that are not
    selected yet, and the totals of the current selection."""
    teams = authorize_any(viewer, Action.READ_HOSTS)
    authorize(viewer, Action.READ_LABELS, GLOBAL)
    now = utcnow()
    chosen_hosts, chosen_labels = set(host_ids), set(label_ids)
    async with ctx.db.connect() as conn:
        hosts = await host_search.list_hosts(
            conn, ListOptions(per_page=SEARCH_LIMIT + len(chosen_hosts), query=text),
            HostFilter(), now=now, teams=teams)
        labels = await label_store.list_labels(conn, ListOptions(query=text), teams)
        facts = await campaign_store.selected_seen_facts(conn, host_ids, label_ids, teams)
    return Targets(
        hosts=[h for h in hosts if h[0] not in chosen_hosts][:SEARCH_LIMIT],
        labels=[lbl for lbl in labels if lbl.id not in chosen_labels],
        totals=tally(facts, now), now=now)
