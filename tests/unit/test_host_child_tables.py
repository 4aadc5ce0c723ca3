"""Deleting a host deletes its rows everywhere: `HOST_CHILD_TABLES` names every table with a
`host_id` column (Fleet's `hostRefs` and its test)."""

from __future__ import annotations

from fleet.store.schema import HOST_CHILD_TABLES, metadata


def test_every_table_with_a_host_id_is_a_host_child_table() -> None:
    with_host_id = {t.name for t in metadata.tables.values() if "host_id" in t.c}
    listed = [t.name for t in HOST_CHILD_TABLES]
    assert len(listed) == len(set(listed)), listed
    assert with_host_id == set(listed), (
        "add the table to HOST_CHILD_TABLES in fleet/store/schema.py, or rename its column")
