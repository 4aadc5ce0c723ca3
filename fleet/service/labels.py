"""Labels as people manage them: list, read, create, modify, delete, fleetctl specs, and the
manual memberships of hosts. (The agent path asks dynamic labels in `label_family.py`.)

Built-in labels cannot be changed or deleted; a label's query and platform are fixed once
created (PATCH refuses them, as Fleet); names are unique (409). A manual label's `hosts` are
identifiers (hostname, uuid, hardware serial or osquery host id) and replace its whole
membership. Every change announces itself (`ServiceContext.labels_changed`) so each
instance's agent path asks the new set of dynamic labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import (
    GLOBAL,
    Action,
    TeamFilter,
    Viewer,
    authorize,
    authorize_any,
    team_filter,
)
from fleet.core.errors import NotFound, ValidationFailed
from fleet.core.hosts import HostFilter
from fleet.core.labels import BUILTIN, DYNAMIC, MANUAL, PLATFORMS, REGULAR, Label
from fleet.service.context import ServiceContext
from fleet.service.host_admin import HostList, host_for
from fleet.store import host_search
from fleet.store import labels as store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions


def _counted(viewer: Viewer) -> TeamFilter:
    """The hosts a label's host_count counts: those the viewer may read."""
    return team_filter(viewer, Action.READ_HOSTS)


async def _existing(conn: AsyncConnection, viewer: Viewer, *, label_id: int | None = None,
                    name: str | None = None) -> Label:
    label = await store.get_label(conn, _counted(viewer), label_id=label_id, name=name)
    if label is None:
        raise NotFound.of(f"Label with id={label_id}" if name is None else f"Label {name}")
    return label


def _not_builtin(label: Label, verb: str) -> None:
    if label.label_type == BUILTIN:
        raise ValidationFailed(f"cannot {verb} built-in label {label.name!r}", name="name")


def _checked_name(name: str) -> str:
    if not name.strip():
        raise ValidationFailed("name must not be empty", name="name")
    return name


async def _host_ids(conn: AsyncConnection, identifiers: Sequence[str]) -> list[int]:
    """The hosts named by `identifiers`; every identifier must name one (422 otherwise)."""
    found = await store.host_ids_by_identifier(conn, identifiers)
    unknown = [i for i in identifiers if i not in found]
    if unknown:
        raise ValidationFailed(f"hosts not found: {', '.join(unknown[:20])}", name="hosts")
    return sorted({h for ids in found.values() for h in ids})


def _new_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of a new regular label from API fields (name, description, query, platform,
    label_membership_type)."""
    query = fields.get("query") or ""
    platform = fields.get("platform") or ""
    if platform not in PLATFORMS:
        raise ValidationFailed(f"platform must be one of {', '.join(p for p in PLATFORMS if p)}"
                               " or empty", name="platform")
    kind = fields.get("label_membership_type") or (DYNAMIC if query.strip() else MANUAL)
    if kind == DYNAMIC and not query.strip():
        raise ValidationFailed("a dynamic label needs a query", name="query")
    if kind == MANUAL and query.strip():
        raise ValidationFailed("a manual label has no query", name="query")
    now = utcnow()
    return {"name": _checked_name(fields["name"]), "description": fields.get("description") or "",
            "query": query, "platform": platform, "label_type": REGULAR,
            "label_membership_type": kind, "created_at": now, "updated_at": now}


async def list_labels(ctx: ServiceContext, viewer: Viewer, opts: ListOptions) -> list[Label]:
    authorize_any(viewer, Action.READ_LABELS)
    async with ctx.db.connect() as conn:
        return await store.list_labels(conn, opts, _counted(viewer))


async def get_label(ctx: ServiceContext, viewer: Viewer, label_id: int) -> Label:
    authorize(viewer, Action.READ_LABELS, GLOBAL)
    async with ctx.db.connect() as conn:
        return await _existing(conn, viewer, label_id=label_id)


async def create_label(ctx: ServiceContext, viewer: Viewer, fields: Mapping[str, Any],
                       hosts: Sequence[str] | None) -> Label:
    """A dynamic label (with a query) or a manual one (with `hosts`, or empty)."""
    authorize(viewer, Action.WRITE_LABELS, GLOBAL)
    if hosts is not None and (fields.get("query") or "").strip():
        raise ValidationFailed("only one of query or hosts may be given", name="hosts")
    values = _new_values(fields)
    async with ctx.db.begin() as conn:
        label_id = await store.insert_label(conn, values)
        if hosts:
            await store.set_label_hosts(conn, label_id, await _host_ids(conn, hosts),
                                        values["created_at"])
        label = await _existing(conn, viewer, label_id=label_id)
    await ctx.labels_changed()
    return label


async def modify_label(ctx: ServiceContext, viewer: Viewer, label_id: int,
                       fields: Mapping[str, Any], hosts: Sequence[str] | None) -> Label:
    """Rename, describe, or (manual labels) replace the hosts; query and platform are
    immutable."""
    authorize(viewer, Action.WRITE_LABELS, GLOBAL)
    for immutable in ("query", "platform"):
        if immutable in fields:
            raise ValidationFailed(f"a label's {immutable} cannot be changed", name=immutable)
    async with ctx.db.begin() as conn:
        label = await _existing(conn, viewer, label_id=label_id)
        _not_builtin(label, "modify")
        if hosts is not None and label.label_membership_type != MANUAL:
            raise ValidationFailed("only a manual label's hosts can be set", name="hosts")
        values = {k: v for k, v in fields.items() if k in ("name", "description")}
        if "name" in values:
            _checked_name(values["name"])
        now = utcnow()
        if values:
            await store.update_label(conn, label_id, {**values, "updated_at": now})
        if hosts is not None:
            await store.set_label_hosts(conn, label_id, await _host_ids(conn, hosts), now)
        label = await _existing(conn, viewer, label_id=label_id)
    await ctx.labels_changed()
    return label


async def delete_label(ctx: ServiceContext, viewer: Viewer, *, label_id: int | None = None,
                       name: str | None = None) -> None:
    authorize(viewer, Action.WRITE_LABELS, GLOBAL)
    async with ctx.db.begin() as conn:
        label = await _existing(conn, viewer, label_id=label_id, name=name)
        _not_builtin(label, "delete")
        await store.delete_label(conn, label.id)
    await ctx.labels_changed()


async def label_hosts(ctx: ServiceContext, viewer: Viewer, label_id: int, opts: ListOptions,
                      where: HostFilter) -> HostList:
    """The label's hosts the viewer may read, with the host list's paging and filters."""
    teams = authorize_any(viewer, Action.READ_HOSTS)
    authorize(viewer, Action.READ_LABELS, GLOBAL)
    now = utcnow()
    async with ctx.db.connect() as conn:
        await _existing(conn, viewer, label_id=label_id)
        found = await host_search.list_hosts(
            conn, opts, dataclasses.replace(where, label_id=label_id), now=now, teams=teams)
    return HostList(found, now)


# ----------------------------------------------------------------------------------------------
# Specs (fleetctl get/apply)


async def label_specs(ctx: ServiceContext, viewer: Viewer) -> list[tuple[Label, list[str]]]:
    """Every label with, for manual ones, its hosts' hostnames."""
    authorize_any(viewer, Action.READ_LABELS)
    async with ctx.db.connect() as conn:
        found = await store.list_labels(conn, ListOptions(), _counted(viewer))
        names = await store.manual_label_hostnames(conn, [lbl.id for lbl in found
                                                          if lbl.label_membership_type == MANUAL])
    return [(lbl, names.get(lbl.id, [])) for lbl in found]


async def label_spec(ctx: ServiceContext, viewer: Viewer, name: str) -> tuple[Label, list[str]]:
    authorize(viewer, Action.READ_LABELS, GLOBAL)
    async with ctx.db.connect() as conn:
        label = await _existing(conn, viewer, name=name)
        names = await store.manual_label_hostnames(conn, [label.id])
    return label, names.get(label.id, [])


async def apply_label_specs(ctx: ServiceContext, viewer: Viewer,
                            specs: Sequence[Mapping[str, Any]]) -> None:
    """Create or overwrite labels by name (query and platform included, as Fleet's apply);
    a manual spec's `hosts` replace its membership. Specs of built-in labels (as `get
    labels` prints them, `label_type: builtin`) are skipped; others naming one are refused.
    All are written in one transaction: one bad spec writes nothing."""
    authorize(viewer, Action.WRITE_LABELS, GLOBAL)
    names = [spec["name"] for spec in specs]
    if len(set(names)) != len(names):
        raise ValidationFailed("duplicate label name in specs", name="name")
    async with ctx.db.begin() as conn:
        existing = await store.labels_by_name(conn, names)
        for spec in specs:
            current = existing.get(spec["name"])
            builtin = current is not None and current.label_type == BUILTIN
            if (spec.get("label_type") == BUILTIN) != builtin:
                raise ValidationFailed(
                    f"cannot modify built-in label {spec['name']!r}" if builtin else
                    f"{spec['name']!r} is not a built-in label", name="label_type")
            if builtin:
                continue
            hosts = spec.get("hosts") or []
            values = _new_values({**spec, "label_membership_type":
                                  spec.get("label_membership_type") or
                                  (MANUAL if hosts else None)})
            if hosts and values["label_membership_type"] != MANUAL:
                raise ValidationFailed(f"label {spec['name']!r}: only manual labels list hosts",
                                       name="hosts")
            if current is None:
                label_id = await store.insert_label(conn, values)
            else:
                label_id = current.id
                await store.update_label(conn, label_id, {
                    k: v for k, v in values.items() if k not in ("created_at", "name")})
            if values["label_membership_type"] == MANUAL:
                await store.set_label_hosts(conn, label_id, await _host_ids(conn, hosts),
                                            values["updated_at"])
    await ctx.labels_changed()


# ----------------------------------------------------------------------------------------------
# A host's manual labels


async def _manual_label_ids(conn: AsyncConnection, names: Sequence[str]) -> list[int]:
    found = await store.labels_by_name(conn, names)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValidationFailed(f"labels not found: {', '.join(unknown[:20])}", name="labels")
    not_manual = [n for n in names if found[n].label_membership_type != MANUAL]
    if not_manual:
        raise ValidationFailed(f"not manual labels: {', '.join(not_manual[:20])}",
                               name="labels")
    return [found[n].id for n in names]


async def change_host_labels(ctx: ServiceContext, viewer: Viewer, host_id: int,
                             names: Sequence[str], *, add: bool) -> None:
    """Add the host to (or remove it from) manual labels, by name (a host write: for who
    may write both hosts and labels)."""
    authorize(viewer, Action.WRITE_LABELS, GLOBAL)
    authorize_any(viewer, Action.WRITE_HOSTS)
    async with ctx.db.begin() as conn:
        await host_for(conn, viewer, host_id, Action.WRITE_HOSTS)
        label_ids = await _manual_label_ids(conn, names)
        if add:
            await store.add_host_to_labels(conn, host_id, label_ids, utcnow())
        else:
            await store.remove_host_from_labels(conn, host_id, label_ids)
