"""`fleet serve` logging: --logging_debug is fleet's debug output, not the libraries'."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fleet import cli, config


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in cli.QUIET_LOGGERS}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_debug_logging_keeps_library_loggers_at_warning(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    cli.setup_logging(config.from_mapping({"logging.debug": True}))
    logging.getLogger("fleet.agent").debug("ours")
    for name in ("aiosqlite", "sqlalchemy.engine.Engine", "asyncmy", "httpx", "httpcore",
                 "websockets.server", "uvicorn.error", "hpack.hpack", "alembic.runtime"):
        logging.getLogger(name).debug("library chatter")
        logging.getLogger(name).info("library chatter")
    logging.getLogger("aiosqlite").warning("library trouble")
    err = capsys.readouterr().err
    assert "DEBUG fleet.agent: ours" in err
    assert "library chatter" not in err
    assert "WARNING aiosqlite: library trouble" in err


def test_mysql_statement_warnings_are_not_logged(restore_logging: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """asyncmy logs each MySQL warning, e.g. every duplicate skipped by INSERT IGNORE."""
    cli.setup_logging(config.from_mapping({}))
    logging.getLogger("asyncmy").warning("Duplicate entry '1-2' for key 'PRIMARY'")
    logging.getLogger("fleet.server").info("ours")
    err = capsys.readouterr().err
    assert "Duplicate entry" not in err and "INFO fleet.server: ours" in err
