"""Team roles reach the SQL: lists, counts, lookups, bulk deletes and live-query targets hold
only what the viewer's teams may see, on both backends. (Teams themselves do not exist yet:
hosts carry a `team_id`, and viewers are built with team roles.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fleet.core.authz import Role, Viewer
from fleet.core.errors import NotFound, PermissionDenied
from fleet.core.hosts import Host, HostFilter
from fleet.service import campaigns, host_admin, users
from fleet.service import queries as query_service
from fleet.service.context import ServiceContext
from fleet.store import hosts as host_store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions
from fleet.store.schema import users as users_table

ADMIN = Viewer(user_id=1, email="admin@example.com", name="Admin", global_role=Role.ADMIN)
OBSERVER = Viewer(user_id=2, email="obs@example.com", name="Obs", global_role=Role.OBSERVER)


def team_viewer(role: Role, team: int = 1) -> Viewer:
    return Viewer(user_id=3, email="team@example.com", name="Team", global_role=None,
                  teams={team: role})


@pytest.fixture
async def host_ids(ctx: ServiceContext) -> dict[int | None, int]:
    """One host in team 1, one in team 2, one in no team; the viewers' users."""
    now = utcnow()
    async with ctx.db.begin() as conn:
        for v in (ADMIN, OBSERVER, team_viewer(Role.OBSERVER)):
            await conn.execute(sa.insert(users_table).values(
                id=v.user_id, email=v.email, name=v.name, password=b"x",
                global_role=v.global_role and str(v.global_role), created_at=now,
                updated_at=now))
    out = {}
    for team in (1, 2, None):
        out[team], _ = await host_store.enroll(
            ctx.db, osquery_host_id=f"h{team}", node_key=f"nk{team}", team_id=team,
            cooldown_seconds=0, values={"hostname": f"host-{team}", "platform": "ubuntu",
                                        "uuid": f"UUID-{team}"})
    return out


async def listed(ctx: ServiceContext, viewer: Viewer) -> list[int]:
    return [Host(*h).id for h in (await host_admin.list_hosts(ctx, viewer, ListOptions())).hosts]


async def test_host_lists_counts_and_lookups_follow_team_roles(
        ctx: ServiceContext, host_ids: dict[int | None, int]) -> None:
    everyone = sorted(host_ids.values())
    assert await listed(ctx, OBSERVER) == everyone
    assert await host_admin.count_hosts(ctx, OBSERVER, ListOptions()) == 3
    team = team_viewer(Role.OBSERVER)
    assert await listed(ctx, team) == [host_ids[1]]
    assert await host_admin.count_hosts(ctx, team, ListOptions(query="host")) == 1
    assert (await host_admin.get_host(ctx, team, host_ids[1])).host.id == host_ids[1]
    for other in (host_ids[2], host_ids[None]):
        with pytest.raises(PermissionDenied):
            await host_admin.get_host(ctx, team, other)
    with pytest.raises(PermissionDenied):
        await host_admin.find_host(ctx, team, "host-2")
    with pytest.raises(PermissionDenied):  # a team gitops sees no hosts at all
        await listed(ctx, team_viewer(Role.GITOPS))


async def test_bulk_deletes_reach_only_the_viewers_teams(
        ctx: ServiceContext, host_ids: dict[int | None, int]) -> None:
    with pytest.raises(PermissionDenied):
        await host_admin.delete_hosts(ctx, team_viewer(Role.OBSERVER), ids=[host_ids[1]],
                                      filters=None)
    maintainer = team_viewer(Role.MAINTAINER)
    deleted = await host_admin.delete_hosts(ctx, maintainer, ids=list(host_ids.values()),
                                            filters=None)
    assert deleted == 1
    with pytest.raises(NotFound):
        await host_admin.delete_host(ctx, maintainer, host_ids[2])
    assert await host_admin.delete_hosts(ctx, maintainer, ids=None,
                                         filters=HostFilter()) == 0
    assert await listed(ctx, OBSERVER) == sorted([host_ids[2], host_ids[None]])


async def test_live_queries_target_only_the_viewers_team_hosts(
        ctx: ServiceContext, host_ids: dict[int | None, int]) -> None:
    runner = team_viewer(Role.OBSERVER_PLUS)
    c = await campaigns.create(ctx, runner, sql="SELECT 1", query_id=None,
                               host_ids=list(host_ids.values()))
    assert c.host_ids == (host_ids[1],)
    by_name = await campaigns.create_by_identifiers(ctx, runner, sql="SELECT 1",
                                                    query_id=None, hosts=["host-2", "host-1"],
                                                    labels=["All Hosts"])
    assert by_name.host_ids == (host_ids[1],)
    assert await campaigns.host_status(ctx, runner, host_ids[1]) == "online"
    with pytest.raises(NotFound):
        await campaigns.host_status(ctx, runner, host_ids[2])
    with pytest.raises(PermissionDenied):
        await campaigns.create(ctx, team_viewer(Role.OBSERVER), sql="SELECT 1",
                               query_id=None, host_ids=[host_ids[1]])


async def test_team_members_run_global_saved_queries_on_their_hosts(
        ctx: ServiceContext, host_ids: dict[int | None, int]) -> None:
    fields = {"query": "SELECT 1", "observer_can_run": True}
    open_query = await query_service.create_query(ctx, ADMIN, {"name": "open", **fields})
    closed = await query_service.create_query(ctx, ADMIN, {**fields, "name": "closed",
                                                           "observer_can_run": False})
    everyone = list(host_ids.values())
    for role in (Role.OBSERVER, Role.OBSERVER_PLUS):
        c = await campaigns.create(ctx, team_viewer(role), sql=None,
                                   query_id=open_query.id, host_ids=everyone)
        assert c.host_ids == (host_ids[1],)
    c = await campaigns.create(ctx, team_viewer(Role.OBSERVER_PLUS), sql=None,
                               query_id=closed.id, host_ids=everyone)
    assert c.host_ids == (host_ids[1],)
    with pytest.raises(PermissionDenied):
        await campaigns.create(ctx, team_viewer(Role.OBSERVER), sql=None,
                               query_id=closed.id, host_ids=everyone)
    # An observer on one team and a maintainer on another runs it on the maintained team only.
    mixed = Viewer(user_id=3, email="team@example.com", name="Team", global_role=None,
                   teams={1: Role.OBSERVER, 2: Role.MAINTAINER})
    c = await campaigns.create(ctx, mixed, sql=None, query_id=closed.id, host_ids=everyone)
    assert c.host_ids == (host_ids[2],)


async def test_team_members_see_global_queries_and_no_users(
        ctx: ServiceContext, host_ids: dict[int | None, int]) -> None:
    await query_service.create_query(ctx, ADMIN, {"name": "shared", "query": "SELECT 1"})
    page = await query_service.list_queries(ctx, team_viewer(Role.OBSERVER), ListOptions())
    assert [q.name for q in page.queries] == ["shared"] and page.count == 1
    with pytest.raises(PermissionDenied):
        await query_service.create_query(ctx, team_viewer(Role.MAINTAINER),
                                         {"name": "mine", "query": "SELECT 2"})
    # Users are global objects; a team admin's view of its members needs user_teams.
    assert await users.list_users(ctx, team_viewer(Role.ADMIN), ListOptions()) == []
    assert len(await users.list_users(ctx, ADMIN, ListOptions())) == 3
