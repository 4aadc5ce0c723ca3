"""Shared fixtures: every integration test runs on both backends.

- `sqlite`: embedded SQLite file + in-process broker.
- `mysql`: MySQL/MariaDB (FLEET_TEST_MYSQL_ADDRESS, default 127.0.0.1:3306, user root) +
  Redis (FLEET_TEST_REDIS_ADDRESS, default 127.0.0.1:6379, database FLEET_TEST_REDIS_DB or 14).
Each test starts from a freshly migrated database: SQLite gets a new file per test (cheap);
MySQL is migrated once per session and every table is emptied (and the migrations' seed rows
put back) before each test, so the suite's cost does not grow with the migration count. With
CI=true an unreachable MySQL or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import sqlalchemy as sa

from fleet import config
from fleet.broker import create_broker
from fleet.service.context import ServiceContext
from fleet.store.db import Database, create_database
from fleet.store.migrate import apply_migrations

MYSQL_ADDRESS = os.environ.get("FLEET_TEST_MYSQL_ADDRESS", "127.0.0.1:3306")
MYSQL_USER = os.environ.get("FLEET_TEST_MYSQL_USERNAME", "root")
MYSQL_PASSWORD = os.environ.get("FLEET_TEST_MYSQL_PASSWORD", "")
REDIS_ADDRESS = os.environ.get("FLEET_TEST_REDIS_ADDRESS", "127.0.0.1:6379")
# Parallel runs on one machine pick different databases (FLEET_TEST_REDIS_DB).
REDIS_TEST_DB = int(os.environ.get("FLEET_TEST_REDIS_DB", "14"))
IN_CI = os.environ.get("CI", "").lower() == "true"

BACKENDS = ["sqlite", "mysql"]


def unavailable(what: str, exc: BaseException) -> None:
    """Skip locally, fail in CI: a backend that cannot be reached is a broken run there."""
    msg = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


async def _mysql_admin(sql: str) -> None:
    import asyncmy  # the driver the server uses; no extra dependency

    host, _, port = MYSQL_ADDRESS.rpartition(":")
    conn = await asyncmy.connect(host=host, port=int(port), user=MYSQL_USER,
                                 password=MYSQL_PASSWORD)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
    finally:
        conn.close()


def backend_overrides(backend: str, tmp_path: Path, db_name: str) -> dict[str, Any]:
    """Config overrides selecting a backend, also used to start real server processes."""
    if backend == "sqlite":
        return {"sqlite.path": str(tmp_path / "fleet.db")}
    return {"mysql.address": MYSQL_ADDRESS, "mysql.username": MYSQL_USER,
            "mysql.password": MYSQL_PASSWORD, "mysql.database": db_name,
            "redis.address": REDIS_ADDRESS, "redis.database": REDIS_TEST_DB}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    """A new, empty MySQL database, dropped afterwards."""
    name = "fleet_test_" + secrets.token_hex(4)
    try:
        asyncio.run(_mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    except Exception as exc:  # connection refused, auth, ...
        unavailable(f"MySQL at {MYSQL_ADDRESS}", exc)
    try:
        yield name
    finally:
        asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture
def db_name(backend: str) -> Iterator[str]:
    """For MySQL a fresh, empty database (dropped afterwards); "" for SQLite."""
    if backend != "mysql":
        yield ""
        return
    with mysql_database() as name:
        yield name


@dataclass(frozen=True)
class MigratedMySQL:
    """The session's migrated MySQL database, and how to bring it back to that state."""

    name: str
    tables: tuple[sa.Table, ...]  # reflected, parents first; alembic_version excluded
    seeds: tuple[tuple[sa.Table, tuple[dict[str, Any], ...]], ...]  # rows the migrations wrote

    async def reset(self, db: Database) -> None:
        """Delete every row and put the seed rows back, in one transaction. DELETE, not
        TRUNCATE: a dozen DDL statements cost ten times more. Auto-increment ids therefore
        keep counting up across tests, as on any long-lived MySQL: tests never assume ids."""
        async with db.engine.begin() as conn:
            for table in reversed(self.tables):
                await conn.execute(table.delete())
            for table, rows in self.seeds:
                await conn.execute(table.insert(), list(rows))


async def _snapshot(db: Database, name: str) -> MigratedMySQL:
    def reflect(conn: Any) -> sa.MetaData:
        found = sa.MetaData()
        found.reflect(conn)
        return found

    async with db.connect() as conn:
        found = await conn.run_sync(reflect)
        tables = tuple(t for t in found.sorted_tables if t.name != "alembic_version")
        seeds = []
        for table in tables:
            rows = tuple(dict(r) for r in (await conn.execute(sa.select(table))).mappings())
            if rows:
                seeds.append((table, rows))
    return MigratedMySQL(name, tables, tuple(seeds))


@pytest.fixture(scope="session")
def migrated_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedMySQL]:
    """Migrated once per test session: Alembic's cost is paid once, however many
    migrations there are."""
    with mysql_database() as name:
        cfg = config.from_mapping(backend_overrides("mysql", tmp_path_factory.mktemp("m"), name))

        async def migrate() -> MigratedMySQL:
            db = create_database(cfg)
            try:
                await apply_migrations(db)
                return await _snapshot(db, name)
            finally:
                await db.close()

        yield asyncio.run(migrate())


@pytest.fixture
def redis_flushed(backend: str) -> None:
    """For the MySQL backend, an empty Redis test database (Redis must be reachable)."""
    if backend != "mysql":
        return

    async def flush() -> None:
        client = redis.asyncio.Redis.from_url(f"redis://{REDIS_ADDRESS}/{REDIS_TEST_DB}")
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    try:
        asyncio.run(flush())
    except Exception as exc:
        unavailable(f"Redis at {REDIS_ADDRESS}", exc)


def make_config(backend: str, tmp_path: Path, db_name: str) -> config.Config:
    """Configuration for the backend under test, on database `db_name` for MySQL."""
    overrides = backend_overrides(backend, tmp_path, db_name)
    overrides.update({
        "filesystem.result_log_file": str(tmp_path / "osquery_result"),
        "filesystem.status_log_file": str(tmp_path / "osquery_status"),
        "auth.bcrypt_cost": 4,
    })
    return config.from_mapping(overrides)


@pytest.fixture
def backend_config(backend: str, tmp_path: Path, db_name: str,
                   redis_flushed: None) -> config.Config:
    """Unmigrated configuration for the backend under test (a new, empty database)."""
    return make_config(backend, tmp_path, db_name)


@pytest.fixture
def session_mysql(backend: str, request: pytest.FixtureRequest) -> MigratedMySQL | None:
    """The session's MySQL database for the mysql backend (set up on first use only)."""
    return request.getfixturevalue("migrated_mysql") if backend == "mysql" else None


@pytest.fixture
async def ctx(backend: str, tmp_path: Path, redis_flushed: None,
              session_mysql: MigratedMySQL | None) -> AsyncIterator[ServiceContext]:
    """A migrated database and a broker for the backend under test."""
    cfg = make_config(backend, tmp_path, session_mysql.name if session_mysql else "")
    db = create_database(cfg)
    if session_mysql is None:
        await apply_migrations(db)
    else:
        await session_mysql.reset(db)
    broker = await create_broker(redis_address=cfg.redis.address,
                                 database=cfg.redis.database)
    context = ServiceContext(cfg=cfg, db=db, broker=broker)
    try:
        yield context
    finally:
        await broker.close()
        await db.close()
