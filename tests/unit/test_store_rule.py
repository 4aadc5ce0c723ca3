"""The transaction rule of `fleet.store` (code review W3): a store function takes its
caller's connection, never the Database, so the service decides what one transaction holds.
The agent-path stores (hosts, schedule) document their own exceptions."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from fleet.store import app_config, campaigns, host_search, queries, secrets, sessions, users

# Reads the enrollment path makes on its own connection (see fleet/store/__init__.py).
AGENT_PATH = {"fleet.store.secrets.find_secret"}


@pytest.mark.parametrize("module", [app_config, campaigns, host_search, queries, secrets,
                                    sessions, users], ids=lambda m: m.__name__)
def test_store_functions_take_the_callers_connection(module: ModuleType) -> None:
    for name, fn in inspect.getmembers(module, inspect.iscoroutinefunction):
        qualified = f"{fn.__module__}.{name}"
        if fn.__module__ != module.__name__ or qualified in AGENT_PATH:
            continue
        annotations = inspect.get_annotations(fn)
        first = next(iter(inspect.signature(fn).parameters))
        assert annotations[first] == "AsyncConnection", qualified
        assert "Database" not in annotations.values(), qualified
