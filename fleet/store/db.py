"""Database handle: one async engine for SQLite (embedded) or MySQL/MariaDB (production).

Dialect differences the rest of the store needs (upserts, insert-ignore, which error is a
duplicate key) are hidden behind small helpers here that read the dialect off the
connection, so the domain modules read the same on both backends and a store function needs
nothing but the connection its caller opened (the rule is in `fleet/store/__init__.py`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from fleet.config import Config
from fleet.core.errors import FleetError


def utcnow() -> dt.datetime:
    """Naive UTC timestamp: what every TIMESTAMP column stores, on both dialects."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class DatabaseUnavailable(Exception):
    """The database could not be reached or answered with an operational error."""


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is away or overwhelmed (connection refused or lost,
    an I/O error, a lock timeout, no pooled connection in time) rather than a bug: callers
    answer such failures with a retryable 503 and one log line, not a 500 and a traceback."""
    if isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError
                  | DisconnectionError | sa.exc.TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind a SQLAlchemy error (its message is one line,
    without SQLAlchemy's "Background on this error" link), else `exc` itself."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


T = TypeVar("T")


class Database:
    """The async engine, with a FIFO write queue on SQLite and a statement counter."""

    def __init__(self, engine: AsyncEngine, health_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        # Health checks get their own connection: under load the main pool is busy with
        # agent work, and a probe waiting for a pooled connection would report a healthy
        # database as unreachable (or answer after the load balancer gave up).
        self.health_engine = health_engine or engine
        self.dialect = engine.dialect.name  # "sqlite" or "mysql"
        # Every statement sent to the database is counted: tests use it to prove that the
        # agent hot path runs no SQL, and it is cheap enough to keep on in production.
        self.statement_count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)
        # SQLite has one writer at a time, and a writer that finds the database locked
        # sleeps in growing steps (busy_timeout). Queueing write transactions here instead
        # turns that contention into a fair FIFO wait without sleeps.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    def _count(self, *_args: Any) -> None:
        self.statement_count += 1

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: `async with db.begin() as conn:`."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    def connect(self) -> Any:
        return self.engine.connect()

    async def transact(self, work: Callable[[AsyncConnection], Awaitable[T]], *,
                       attempts: int, backoff: float = 0.0) -> T:
        """`work` in a write transaction, run again (up to `attempts` times in all) while
        the database refuses it for a reason that retrying cures (`is_retryable`). With
        `backoff`, a jittered pause that doubles each time separates the attempts, so the
        transactions that collided do not collide again."""
        for attempt in range(attempts):
            try:
                async with self.begin() as conn:
                    return await work(conn)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts - 1 or not self.is_retryable(exc):
                    raise
                if backoff:
                    await asyncio.sleep(random.uniform(0, backoff * 2**attempt))
        raise ValueError("attempts must be positive")

    def is_retryable(self, exc: Exception) -> bool:
        """A unique-key race, deadlock or lock timeout: running the transaction again helps."""
        if isinstance(exc, IntegrityError):
            return True
        orig = exc.orig if isinstance(exc, OperationalError) else None
        code = orig.args[0] if orig is not None and orig.args else None
        return code in (1205, 1213) or "database is locked" in str(exc)

    async def ping(self) -> None:
        try:
            async with self.health_engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any driver error means "not healthy"
            raise DatabaseUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self.engine.dispose()
        if self.health_engine is not self.engine:
            await self.health_engine.dispose()


async def upsert(conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]],
                 keys: Sequence[str], update: Sequence[str]) -> None:
    """Insert rows, or update the `update` columns of rows whose `keys` already exist."""
    if rows:
        await conn.execute(_upsert(conn.dialect.name, table, tuple(keys), tuple(update)),
                           list(rows))


def insert_ignore(dialect: str, table: sa.Table) -> Any:
    """INSERT that silently skips rows whose key already exists (`dialect`: the
    connection's `conn.dialect.name`; a string so the statement can be built ahead)."""
    if dialect == "mysql":
        return mysql.insert(table).prefix_with("IGNORE")
    return sqlite.insert(table).on_conflict_do_nothing()


@functools.cache
def _bulk_insert_sql(dialect: str, table: sa.Table, columns: tuple[str, ...]) -> str:
    mark = "%s" if dialect == "mysql" else "?"
    return (f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)})")


async def bulk_insert(conn: AsyncConnection, table: sa.Table, columns: Sequence[str],
                      rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows (tuples in `columns` order) in one driver `executemany`.

    For lists of hundreds of rows per request (a host's software): SQLAlchemy's
    per-parameter processing costs more than the database's work, while the drivers send
    the batch as one multi-row INSERT (asyncmy) or one prepared statement (sqlite3). The
    columns' own bind processing (SQLite datetimes as text) is still applied."""
    if not rows:
        return
    dialect = conn.dialect
    processors = [(i, proc) for i, name in enumerate(columns)
                  if (proc := table.c[name].type.dialect_impl(dialect)
                      .bind_processor(dialect)) is not None]
    params = [_processed(row, processors) for row in rows] if processors else list(rows)
    await conn.exec_driver_sql(_bulk_insert_sql(dialect.name, table, tuple(columns)), params)


def _processed(row: Sequence[Any], processors: Sequence[tuple[int, Any]]) -> tuple[Any, ...]:
    out = list(row)
    for i, proc in processors:
        if out[i] is not None:
            out[i] = proc(out[i])
    return tuple(out)


# MySQL ER_DUP_ENTRY and ER_DUP_ENTRY_WITH_KEY_NAME; SQLite's extended result codes.
_MYSQL_DUPLICATE = (1062, 1586)
_SQLITE_DUPLICATE = (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)


def is_duplicate_key(exc: BaseException) -> bool:
    """Whether `exc` is a unique or primary key violation (by error code, on both
    dialects), as opposed to another constraint (a foreign key, NOT NULL)."""
    if not isinstance(exc, IntegrityError):
        return False
    orig = driver_error(exc)
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) in _SQLITE_DUPLICATE
    return mysql_error_code(exc) in _MYSQL_DUPLICATE


@contextmanager
def duplicate_raises(error: FleetError) -> Iterator[None]:
    """Translate a duplicate key raised inside the block into `error` (e.g. AlreadyExists
    naming the field): the store function knows which key can clash, the transport does
    not have to guess it from driver messages."""
    try:
        yield
    except IntegrityError as exc:
        if is_duplicate_key(exc):
            raise error from None
        raise


@functools.cache
def _upsert(dialect: str, table: sa.Table, keys: tuple[str, ...],
            update: tuple[str, ...]) -> Any:
    """The upsert statement of one shape, built once (the seen-time flush runs it often)."""
    if dialect == "mysql":
        my = mysql.insert(table)
        return my.on_duplicate_key_update({c: my.inserted[c] for c in update})
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(index_elements=list(keys),
                                      set_={c: lite.excluded[c] for c in update})


def database_url(cfg: Config) -> URL:
    if not cfg.mysql.address:
        return URL.create("sqlite+aiosqlite", database=os.path.abspath(cfg.sqlite.path))
    host, _, port = cfg.mysql.address.rpartition(":")
    if not host:
        host, port = cfg.mysql.address, "3306"
    return URL.create("mysql+asyncmy", username=cfg.mysql.username,
                      password=cfg.mysql.password or None, host=host, port=int(port),
                      database=cfg.mysql.database, query={"charset": "utf8mb4"})


# MySQL error codes: the database does not exist; the user may not create it.
ER_BAD_DB_ERROR = 1049
ER_ACCESS_DENIED = (1044, 1045, 1227)


def mysql_error_code(exc: BaseException) -> int | None:
    """The MySQL error number behind a SQLAlchemy/driver exception, if any."""
    orig = getattr(exc, "orig", exc)
    code = orig.args[0] if getattr(orig, "args", None) else None
    return code if isinstance(code, int) else None


def create_database_sql(name: str) -> str:
    """The statement that creates the Fleet database with the character set it needs."""
    quoted = "`" + name.replace("`", "``") + "`"
    return f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"


async def create_mysql_database(cfg: Config) -> None:
    """Create `mysql.database`, connecting without one; raises the driver's error (e.g.
    access denied) for the caller to explain."""
    engine = create_async_engine(database_url(cfg).set(database=""))
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(create_database_sql(cfg.mysql.database)))
    finally:
        await engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers proceed during writes; busy_timeout turns brief write contention
    # into a short wait instead of "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def create_database(cfg: Config) -> Database:
    url = database_url(cfg)
    if url.drivername.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=5, max_overflow=5)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        idle = min(cfg.mysql.max_idle_conns, cfg.mysql.max_open_conns)
        engine = create_async_engine(
            url, pool_size=max(idle, 1), max_overflow=max(cfg.mysql.max_open_conns - idle, 0),
            pool_recycle=cfg.mysql.conn_max_lifetime or -1)
        _ping_when_idle(engine)
    # One connection, checked before use: a probe after a database restart reconnects
    # instead of failing once on the connection the restart cut.
    health = create_async_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True,
                                 pool_timeout=HEALTH_POOL_TIMEOUT)
    return Database(engine, health)


# Probes that overlap (a load balancer per zone, say) wait this long for the one connection.
HEALTH_POOL_TIMEOUT = 2.0


# A pooled connection unused for this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pre-ping only connections that sat idle, where a restart or timeout may have cut them.

    SQLAlchemy's pool_pre_ping costs a round trip on every checkout, which under agent load
    is thousands a second for connections used milliseconds ago. A connection that breaks
    while busy fails its statement instead, and SQLAlchemy then invalidates the pool.
    """
    pool, dialect = engine.sync_engine.pool, engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any driver error: let the pool open a fresh connection
            raise DisconnectionError(str(exc)) from exc

    event.listen(pool, "checkin", checkin)
    event.listen(pool, "checkout", checkout)
