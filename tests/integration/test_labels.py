"""Labels end to end, on both backends: the REST API with its errors, dynamic labels
evaluated through the agent endpoints, manual labels, and live queries by label."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.core.authz import Role
from fleet.core.labels import PREFIX
from fleet.service import campaigns
from fleet.service.context import ServiceContext
from tests import factories
from tests.integration.conftest import Api, assert_error

SECRET = "labels-secret"
BUILTINS = {"All Hosts", "macOS", "Ubuntu Linux", "CentOS Linux", "MS Windows",
            "Red Hat Linux", "All Linux", "Fedora Linux"}
PLATFORMS = {"mac-1": "darwin", "ubu-1": "ubuntu", "win-1": "windows", "ubu-2": "ubuntu"}


def details(hostname: str, platform: str) -> dict[str, Any]:
    return {"os_version": {"name": platform, "platform": platform, "version": "1.0"},
            "system_info": {"hostname": hostname, "uuid": f"uuid-{hostname}",
                            "hardware_serial": f"serial-{hostname}"}}


async def enroll(api: Api, hostname: str) -> str:
    r = await api.client.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": f"osq-{hostname}",
        "host_details": details(hostname, PLATFORMS[hostname])})
    assert r.status_code == 200, r.text
    return str(r.json()["node_key"])


async def read(api: Api, node_key: str) -> dict[str, str]:
    r = await api.client.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert r.status_code == 200, r.text
    queries: dict[str, str] = r.json()["queries"]
    return queries


async def write(api: Api, node_key: str, queries: dict[str, Any],
                statuses: dict[str, int] | None = None) -> None:
    r = await api.client.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "queries": queries,
        "statuses": statuses or {name: 0 for name in queries}})
    assert r.status_code == 200, r.text


async def label_id(api: Api, name: str) -> int:
    r = await api.request("GET", "/labels")
    return int(next(lbl["id"] for lbl in r.json()["labels"] if lbl["name"] == name))


async def member_names(api: Api, lid: int) -> set[str]:
    r = await api.request("GET", f"/labels/{lid}/hosts")
    assert r.status_code == 200, r.text
    return {h["hostname"] for h in r.json()["hosts"]}


@pytest.fixture
async def fleet(admin_api: Api) -> tuple[Api, dict[str, str]]:
    """The admin's API and four enrolled hosts (hostname -> node key)."""
    await factories.enroll_secret(admin_api.ctx, SECRET)
    return admin_api, {name: await enroll(admin_api, name) for name in PLATFORMS}


async def test_builtin_labels_are_there_and_protected(admin_api: Api) -> None:
    r = await admin_api.request("GET", "/labels")
    assert r.status_code == 200, r.text
    found = {lbl["name"]: lbl for lbl in r.json()["labels"]}
    assert BUILTINS <= set(found)
    for name in BUILTINS:
        assert (found[name]["label_type"], found[name]["label_membership_type"]) == \
            ("builtin", "dynamic")
    assert found["All Hosts"]["query"].lower().startswith("select 1")
    macos = found["macOS"]["id"]
    assert_error(await admin_api.request("PATCH", f"/labels/{macos}", json={"name": "x"}),
                 422, "Validation Failed", "name")
    assert_error(await admin_api.request("DELETE", f"/labels/id/{macos}"),
                 422, "Validation Failed", "name")
    assert_error(await admin_api.request("DELETE", "/labels/All Hosts"),
                 422, "Validation Failed", "name")
    r = await admin_api.request("GET", "/labels/summary")
    assert {lbl["name"] for lbl in r.json()["labels"]} >= BUILTINS
    assert set(r.json()["labels"][0]) == {"id", "name", "description", "label_type"}


async def test_label_crud_and_errors(admin_api: Api) -> None:
    r = await admin_api.request("POST", "/labels", json={
        "name": "Big disks", "query": "SELECT 1 FROM mounts WHERE blocks > 1", "platform": ""})
    assert r.status_code == 200, r.text
    label = r.json()["label"]
    assert (label["label_type"], label["label_membership_type"], label["host_count"]) == \
        ("regular", "dynamic", 0)
    lid = label["id"]
    assert_error(await admin_api.request("POST", "/labels", json={
        "name": "Big disks", "query": "SELECT 1"}), 409, "Resource Already Exists", "name")
    assert_error(await admin_api.request("POST", "/labels", json={
        "name": "macOS", "query": "SELECT 1"}), 409, "Resource Already Exists", "name")
    assert_error(await admin_api.request("PATCH", f"/labels/{lid}", json={
        "query": "SELECT 2"}), 422, "Validation Failed", "query")
    assert_error(await admin_api.request("PATCH", f"/labels/{lid}", json={
        "platform": "darwin"}), 422, "Validation Failed", "platform")
    assert_error(await admin_api.request("PATCH", f"/labels/{lid}", json={
        "hosts": ["x"]}), 422, "Validation Failed", "hosts")
    assert_error(await admin_api.request("POST", "/labels", json={
        "name": "bad", "query": "SELECT 1", "platform": "plan9"}),
        422, "Validation Failed", "platform")
    assert_error(await admin_api.request("POST", "/labels", json={
        "name": "both", "query": "SELECT 1", "hosts": ["a"]}),
        422, "Validation Failed", "hosts")
    assert_error(await admin_api.request("POST", "/labels", json={"name": " "}),
                 422, "Validation Failed", "name")
    assert_error(await admin_api.request("GET", "/labels?bogus=1"), 400, "Bad request", "bogus")
    assert_error(await admin_api.request("GET", "/labels?order_key=nope"),
                 400, "Bad request", "order_key")
    r = await admin_api.request("PATCH", f"/labels/{lid}", json={
        "name": "Huge disks", "description": "d"})
    assert r.status_code == 200 and r.json()["label"]["name"] == "Huge disks"
    assert (await admin_api.request("GET", f"/labels/{lid}")).json()["label"]["description"] \
        == "d"
    assert (await admin_api.request("DELETE", "/labels/Huge disks")).status_code == 200
    assert_error(await admin_api.request("GET", f"/labels/{lid}"), 404, "Resource Not Found")
    assert_error(await admin_api.request("DELETE", f"/labels/id/{lid}"),
                 404, "Resource Not Found")


async def test_observer_reads_labels_but_cannot_write(admin_api: Api) -> None:
    _user, token = await admin_api.user("observer")
    assert (await admin_api.request("GET", "/labels", token=token)).status_code == 200
    r = await admin_api.request("POST", "/labels", token=token,
                                json={"name": "n", "query": "SELECT 1"})
    assert r.status_code == 403


async def test_dynamic_labels_gain_exactly_the_matching_hosts(
        fleet: tuple[Api, dict[str, str]]) -> None:
    api, keys = fleet
    # Every host is asked the built-ins (platform ''); the label list is cached from here on.
    asked = await read(api, keys["mac-1"])
    builtin_ids = {await label_id(api, name) for name in BUILTINS - {"Fedora Linux"}}
    assert {PREFIX + str(i) for i in builtin_ids} <= set(asked)

    # Created after the cache was loaded: the change reaches the agent path at once.
    r = await api.request("POST", "/labels", json={
        "name": "Darwin by REST", "query": "SELECT 1 FROM os_version WHERE platform = 'darwin'"})
    rest_label = r.json()["label"]["id"]
    r = await api.request("POST", "/spec/labels", json={"specs": [{
        "name": "Windows by spec", "query": "SELECT 1 FROM os_version",
        "platform": "windows", "label_membership_type": "dynamic"}]})
    assert r.status_code == 200, r.text
    spec_label = await label_id(api, "Windows by spec")

    for hostname, key in keys.items():
        asked = await read(api, key)
        assert PREFIX + str(rest_label) in asked
        assert (PREFIX + str(spec_label) in asked) == (PLATFORMS[hostname] == "windows")
        answers: dict[str, Any] = {name: [] for name in asked if name.startswith(PREFIX)}
        if hostname == "mac-1":
            answers[PREFIX + str(rest_label)] = [{"1": "1"}]
        if hostname == "win-1":
            answers[PREFIX + str(spec_label)] = [{"1": "1"}]
        await write(api, key, answers)

    assert await member_names(api, rest_label) == {"mac-1"}
    assert await member_names(api, spec_label) == {"win-1"}
    r = await api.request("GET", f"/labels/{rest_label}")
    assert r.json()["label"]["host_count"] == 1
    # Answered: nothing is due, and an idle check-in costs no SQL.
    before = api.ctx.db.statement_count
    for key in keys.values():
        assert not any(n.startswith(PREFIX) for n in await read(api, key))
    assert api.ctx.db.statement_count == before

    # A live query by either label reaches only its members.
    admin = await factories.user(api.ctx, Role.ADMIN)
    for name, member in (("Darwin by REST", "mac-1"), ("Windows by spec", "win-1")):
        campaign = await campaigns.create_by_identifiers(
            api.ctx, admin, sql="SELECT 42", query_id=None, hosts=[], labels=[name])
        live = f"fleet_distributed_query_{campaign.id}"
        reached = {hostname for hostname, key in keys.items()
                   if live in await read(api, key)}
        assert reached == {member}
    # "All Hosts" targets every host.
    campaign = await campaigns.create_by_identifiers(
        api.ctx, admin, sql="SELECT 42", query_id=None, hosts=[], labels=["All Hosts"])
    assert len(campaign.host_ids) == len(keys)


async def test_no_rows_or_a_failure_removes_the_membership(
        fleet: tuple[Api, dict[str, str]]) -> None:
    api, keys = fleet
    r = await api.request("POST", "/labels", json={"name": "L", "query": "SELECT 1"})
    lid = r.json()["label"]["id"]
    name = PREFIX + str(lid)
    await write(api, keys["ubu-1"], {name: [{"1": "1"}]})
    await write(api, keys["ubu-2"], {name: [{"1": "1"}]})
    assert await member_names(api, lid) == {"ubu-1", "ubu-2"}
    await write(api, keys["ubu-1"], {name: []})
    await write(api, keys["ubu-2"], {name: ""}, statuses={name: 1})
    assert await member_names(api, lid) == set()
    # An answer to a label that does not exist (or no longer does) stores nothing.
    await write(api, keys["ubu-1"], {PREFIX + "999999": [{"1": "1"}], PREFIX + "x": []})


async def test_manual_labels_hold_exactly_the_listed_hosts(
        fleet: tuple[Api, dict[str, str]]) -> None:
    api, _keys = fleet
    r = await api.request("POST", "/labels", json={
        "name": "Pilot", "hosts": ["mac-1", "uuid-ubu-1", "serial-win-1"]})
    assert r.status_code == 200, r.text
    label = r.json()["label"]
    assert label["label_membership_type"] == "manual" and label["host_count"] == 3
    lid = label["id"]
    assert await member_names(api, lid) == {"mac-1", "ubu-1", "win-1"}
    assert_error(await api.request("POST", "/labels", json={"name": "P2", "hosts": ["nope"]}),
                 422, "Validation Failed", "hosts")
    r = await api.request("PATCH", f"/labels/{lid}", json={"hosts": ["osq-ubu-2"]})
    assert r.status_code == 200 and r.json()["label"]["host_count"] == 1
    assert await member_names(api, lid) == {"ubu-2"}

    host_id = int((await api.request("GET", "/hosts/identifier/mac-1")).json()["host"]["id"])
    r = await api.request("POST", f"/hosts/{host_id}/labels", json={"labels": ["Pilot"]})
    assert r.status_code == 200, r.text
    assert await member_names(api, lid) == {"ubu-2", "mac-1"}
    detail = (await api.request("GET", f"/hosts/{host_id}")).json()["host"]
    assert "Pilot" in {lbl["name"] for lbl in detail["labels"]}
    r = await api.request("DELETE", f"/hosts/{host_id}/labels", json={"labels": ["Pilot"]})
    assert r.status_code == 200
    assert await member_names(api, lid) == {"ubu-2"}
    assert_error(await api.request("POST", f"/hosts/{host_id}/labels", json={
        "labels": ["macOS"]}), 422, "Validation Failed", "labels")
    assert_error(await api.request("POST", f"/hosts/{host_id}/labels", json={
        "labels": ["no such"]}), 422, "Validation Failed", "labels")
    assert_error(await api.request("POST", "/hosts/999999/labels", json={
        "labels": ["Pilot"]}), 404, "Resource Not Found")

    # Manual labels are not asked of hosts, and their specs list hostnames.
    r = await api.request("GET", "/spec/labels/Pilot")
    assert r.json()["specs"]["hosts"] == ["ubu-2"]
    r = await api.request("POST", "/spec/labels", json={"specs": [
        {"name": "Pilot", "label_membership_type": "manual", "hosts": ["win-1", "mac-1"]}]})
    assert r.status_code == 200, r.text
    assert await member_names(api, lid) == {"win-1", "mac-1"}


async def test_label_hosts_pages_and_filters(fleet: tuple[Api, dict[str, str]]) -> None:
    api, _keys = fleet
    all_hosts = await label_id(api, "All Hosts")
    r = await api.request("GET", f"/labels/{all_hosts}/hosts?per_page=2&page=0"
                                 "&order_key=hostname")
    assert [h["hostname"] for h in r.json()["hosts"]] == ["mac-1", "ubu-1"]
    r = await api.request("GET", f"/labels/{all_hosts}/hosts?query=ubu")
    assert {h["hostname"] for h in r.json()["hosts"]} == {"ubu-1", "ubu-2"}
    r = await api.request("GET", f"/labels/{all_hosts}/hosts?status=online")
    assert len(r.json()["hosts"]) == 4
    assert_error(await api.request("GET", f"/labels/{all_hosts}/hosts?status=bad"),
                 400, "Bad request")
    assert_error(await api.request("GET", "/labels/999999/hosts"), 404, "Resource Not Found")


async def test_spec_round_trip_and_builtin_specs_are_skipped(admin_api: Api) -> None:
    r = await admin_api.request("GET", "/spec/labels")
    specs = r.json()["specs"]
    assert {s["name"] for s in specs} >= BUILTINS
    # What `get labels` prints applies back unchanged.
    r = await admin_api.request("POST", "/spec/labels", json={"specs": specs})
    assert r.status_code == 200, r.text
    assert_error(await admin_api.request("POST", "/spec/labels", json={"specs": [
        {"name": "macOS", "query": "SELECT 2"}]}), 422, "Validation Failed", "label_type")
    assert_error(await admin_api.request("POST", "/spec/labels", json={"specs": [
        {"name": "dup", "query": "SELECT 1"}, {"name": "dup", "query": "SELECT 1"}]}),
        422, "Validation Failed", "name")
    assert_error(await admin_api.request("GET", "/spec/labels/nope"), 404, "Resource Not Found")


async def test_other_instances_drop_their_label_list(ctx: ServiceContext) -> None:
    first = await ctx.label_queries.queries(ctx.db)
    await factories.label(ctx, name="made elsewhere", label_membership_type="dynamic")
    assert await ctx.label_queries.queries(ctx.db) == first  # cached
    ctx.remote_change(b"another-instance:labels:")
    assert len(await ctx.label_queries.queries(ctx.db)) == len(first) + 1


async def test_targets_search_and_count(fleet: tuple[Api, dict[str, str]]) -> None:
    api, _keys = fleet
    macos = await label_id(api, "macOS")
    await api.request("POST", "/labels", json={"name": "Pilot", "hosts": ["ubu-1", "win-1"]})
    pilot = await label_id(api, "Pilot")
    r = await api.request("POST", "/targets", json={"query": "ubu"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {h["hostname"] for h in body["targets"]["hosts"]} == {"ubu-1", "ubu-2"}
    assert body["targets_count"] == 0
    r = await api.request("POST", "/targets", json={"query": "pil", "selected": {
        "hosts": [], "labels": [pilot]}})
    body = r.json()
    assert body["targets"]["labels"] == []  # already selected
    assert (body["targets_count"], body["targets_online"], body["targets_offline"]) == (2, 2, 0)
    r = await api.request("POST", "/targets", json={"query": "mac"})
    assert [lbl["id"] for lbl in r.json()["targets"]["labels"]] == [macos]

    ubu_2 = int((await api.request("GET", "/hosts/identifier/ubu-2")).json()["host"]["id"])
    r = await api.request("POST", "/targets/count", json={"selected": {
        "hosts": [ubu_2], "labels": [pilot]}})
    assert r.json() == {"targets_count": 3, "targets_online": 3, "targets_offline": 0}
    all_hosts = await label_id(api, "All Hosts")
    r = await api.request("POST", "/targets/count", json={"selected": {"labels": [all_hosts]}})
    assert r.json()["targets_count"] == 4
    assert_error(await api.request("POST", "/targets/count", json={"selected": {
        "labels": ["x"]}}), 422, "Validation Failed", "labels")
