"""One transaction rule: store functions take the caller's connection; the only ones that
open their own are the hot-path exceptions named in `fleet.service.OWN_TRANSACTION`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import fleet.store
from fleet.service import OWN_TRANSACTION

# Not domain modules: the engine itself and the migration runner.
INFRASTRUCTURE = {"db", "migrate", "migrations", "schema"}


def store_functions() -> list[tuple[str, inspect.Signature]]:
    out = []
    for info in pkgutil.iter_modules(fleet.store.__path__):
        if info.name in INFRASTRUCTURE:
            continue
        module = importlib.import_module(f"fleet.store.{info.name}")
        for name, func in vars(module).items():
            if not name.startswith("_") and inspect.iscoroutinefunction(func) \
                    and func.__module__ == module.__name__:
                out.append((f"{module.__name__}.{name}", inspect.signature(func)))
    return out


def test_store_functions_take_a_connection_except_the_named_ones() -> None:
    functions = dict(store_functions())
    assert OWN_TRANSACTION <= set(functions), "a named exception no longer exists"
    for name, signature in functions.items():
        first = next(iter(signature.parameters.values()))
        expected = ("db", "Database") if name in OWN_TRANSACTION else \
            ("conn", "AsyncConnection")
        assert (first.name, first.annotation) == expected, name
