"""Domain types are the seam between store and transports (code review W1): the store
selects a type's fields, not a table's columns, and no SQLAlchemy row crosses into the
service or API layers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import fields, is_dataclass
from types import ModuleType

import pytest

import fleet.api
import fleet.service
from fleet.core import campaigns, labels, queries, secrets, users
from fleet.core import hosts as core_hosts
from fleet.core.hosts import HOST_FIELDS, Host
from fleet.store import host_search
from fleet.store.schema import hosts


def test_host_lists_select_the_fields_of_host_not_the_columns_of_the_table() -> None:
    """A column added to `hosts` for internal use is not even read until Host declares it
    (and the API's Host object is chosen apart from that: see test_api_hosts)."""
    selected = tuple(c.name for c in host_search._select_hosts().selected_columns)
    assert selected == HOST_FIELDS == tuple(f.name for f in fields(Host))
    assert set(hosts.c.keys()) - set(selected) == {"node_key"}


def _modules(package: ModuleType) -> list[ModuleType]:
    prefix = package.__name__ + "."
    return [importlib.import_module(m.name)
            for m in pkgutil.iter_modules(package.__path__, prefix)]


# sa.Row, Row[...], RowMapping; not names that merely contain the word (agent `Rows`).
SQLALCHEMY_ROW = re.compile(r"\b(Row|RowMapping)\b")


@pytest.mark.parametrize("package", [fleet.service, fleet.api], ids=["service", "api"])
def test_no_sqlalchemy_row_in_service_or_api_signatures(package: ModuleType) -> None:
    """Functions' parameters and results, and the fields of the types they return."""
    offenders = []
    for module in _modules(package):
        for name, obj in inspect.getmembers(module):
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) \
                    or obj.__module__ != module.__name__:
                continue
            for annotation in inspect.get_annotations(obj).values():
                if SQLALCHEMY_ROW.search(str(annotation)):
                    offenders.append(f"{module.__name__}.{name}: {annotation}")
    assert offenders == []


def test_domain_types_are_frozen_and_slotted() -> None:
    modules = (core_hosts, labels, queries, users, secrets, campaigns)
    types = [obj for module in modules
             for _name, obj in inspect.getmembers(module, inspect.isclass)
             if is_dataclass(obj) and obj.__module__ == module.__name__]
    assert {t.__name__ for t in types} >= {"Host", "Label", "Query", "User", "Session"}
    for t in types:
        assert t.__dataclass_params__.frozen and "__slots__" in vars(t), t  # type: ignore[attr-defined]
