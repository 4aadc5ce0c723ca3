"""Dependencies point down the layers of DESIGN.md, checked on the source (ast, every import
statement, including lazy and type-only ones):

    core, config, small helpers  <-  store, broker, logdest  <-  service
        <-  api, agent, jobs (web)  <-  server  <-  cli

A module may import its own package and the layers below its own; packages on one layer do
not import each other (store never imports broker). Transports (api, agent, web) parse and
serialize: no SQL, so neither `fleet.store` nor SQLAlchemy. Redis is used only in broker/;
core is pure (standard library only); fleetctl and osquery_perf are clients of the wire
protocols and import nothing from the server.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS = {
    "fleet": 0,  # the package itself: __version__
    "fleet.core": 0,
    "fleet.config": 0,
    "fleet.config_sections": -1,  # generated from fleet.config's table; stdlib only
    "fleet.logthrottle": 0,
    "fleet.security_headers": 0,
    "fleet.tls": 0,
    "fleet.store": 1,
    "fleet.broker": 1,
    "fleet.logdest": 1,
    "fleet.service": 2,
    "fleet.api": 3,
    "fleet.agent": 3,
    "fleet.jobs": 3,
    "fleet.web": 3,
    "fleet.server": 4,
    "fleet.httpserver": 4,
    "fleet.lifecycle": 4,
    "fleet.cli": 5,  # the entry point: builds the server
}
TRANSPORTS = {"fleet.api", "fleet.agent", "fleet.web"}
SQL = {"sqlalchemy", "alembic"}
WEB_FRAMEWORKS = {"fastapi", "starlette", "pydantic", "uvicorn"}
BELOW_THE_WEB = {"fleet.core", "fleet.store", "fleet.broker", "fleet.logdest", "fleet.service"}
CLIENTS = ("fleetctl", "osquery_perf")

# Transport modules that still reach into the store (review W1, W14): each goes away with
# its fix, and then must leave this list too (the test says so), so it only shrinks.
KNOWN_LEAKS = {
    ("fleet.agent.routes", "fleet.store"),
    ("fleet.api.deps", "fleet.store"),
    ("fleet.api.errors", "sqlalchemy"),
    ("fleet.api.fields", "fleet.store"),
    ("fleet.api.fields", "sqlalchemy"),
    ("fleet.api.labels", "fleet.store"),  # fits(): column widths, as queries and users
    ("fleet.api.queries", "fleet.store"),
    ("fleet.api.secrets", "fleet.store"),
    ("fleet.api.users", "fleet.store"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            else:
                yield str(node.module)


def unit(module: str) -> str:
    """The layer table's key for a module of ours: `fleet.api.hosts` -> `fleet.api`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "fleet" and len(parts) > 1 else parts[0]


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def fleet_edges() -> Iterator[tuple[str, str]]:
    """(importing module, unit it imports) for every import in fleet/."""
    for path in sources("fleet"):
        for target in imports(path):
            yield module_name(path), unit(target)


def test_every_fleet_module_has_a_layer() -> None:
    missing = {unit(module_name(p)) for p in sources("fleet")} - set(LAYERS)
    assert not missing, f"give {sorted(missing)} a layer in LAYERS (and in DESIGN.md)"


def test_imports_point_down_the_layers() -> None:
    bad = []
    for source, target in fleet_edges():
        mine = unit(source)
        if target in LAYERS and target != mine and LAYERS[target] >= LAYERS[mine]:
            bad.append(f"{source} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_sql_only_in_store_and_services_redis_only_in_broker() -> None:
    bad = set()
    for source, target in fleet_edges():
        mine = unit(source)
        if (source, target) in KNOWN_LEAKS:
            continue
        if (target in SQL and mine not in ("fleet.store", "fleet.service")) \
                or (target == "fleet.store" and mine in TRANSPORTS) \
                or (target == "redis" and mine != "fleet.broker") \
                or (target in WEB_FRAMEWORKS and mine in BELOW_THE_WEB):
            bad.add(f"{source} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_known_leaks_are_still_there() -> None:
    gone = KNOWN_LEAKS - set(fleet_edges())
    assert not gone, f"fixed, so remove from KNOWN_LEAKS: {sorted(gone)}"


def test_core_is_pure() -> None:
    bad = {f"{module_name(p)} imports {target}" for p in sources("fleet/core")
           for target in imports(p)
           if unit(target) != "fleet.core" and target.split(".")[0] not in sys.stdlib_module_names}
    assert not bad, "\n".join(sorted(bad))


def test_clients_import_nothing_from_the_server() -> None:
    bad = {f"{module_name(p)} imports {target}" for package in CLIENTS
           for p in sources(package) for target in imports(p)
           if target == "fleet" or target.startswith("fleet.")}
    assert not bad, "\n".join(sorted(bad))
