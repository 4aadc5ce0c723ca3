"""What the operator reads: one line per failed login, one line per database retry."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fleet import config
from fleet.jobs import background
from fleet.service.seen import SeenBuffer
from fleet.store.db import create_database
from tests.e2e.conftest import free_port
from tests.integration.conftest import ADMIN_EMAIL, Api


@pytest.mark.parametrize(("email", "password", "reason"), [
    (ADMIN_EMAIL, "Wrong-password-1!", "wrong password"),
    ("nobody@example.com", "Wrong-password-1!", "no such user"),
])
async def test_failed_login_is_one_line_with_reason_email_and_ip(
        admin_api: Api, caplog: pytest.LogCaptureFixture, email: str, password: str,
        reason: str) -> None:
    caplog.set_level(logging.INFO)
    r = await admin_api.client.post("/api/v1/fleet/login",
                                    json={"email": email, "password": password})
    assert r.status_code == 401
    lines = [rec for rec in caplog.records if rec.name.startswith("fleet")]
    assert len(lines) == 1, caplog.text
    line = lines[0]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert line.getMessage() == f"login failed for '{email}' from 127.0.0.1: {reason}"
    assert password not in caplog.text


async def test_successful_login_logs_nothing(admin_api: Api,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await admin_api.login(ADMIN_EMAIL)
    assert "login failed" not in caplog.text


async def test_database_outage_in_a_retry_loop_is_one_line_per_attempt(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seen-time flusher retries every few seconds while the database is away: each
    attempt is one warning line naming the driver's error, not a traceback."""
    unreachable = {"sqlite.path": str(tmp_path / "missing-dir" / "fleet.db")} \
        if backend == "sqlite" else {"mysql.address": f"127.0.0.1:{free_port()}"}
    db = create_database(config.from_mapping(unreachable))
    seen = SeenBuffer()
    seen.record(1)
    monkeypatch.setattr(background, "FLUSH_INTERVAL", 0.01)
    ctx: Any = SimpleNamespace(db=db, seen=seen)
    task = asyncio.create_task(background.flush_seen_forever(ctx))
    attempts: list[logging.LogRecord] = []
    two_attempts = asyncio.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            attempts.append(record)
            if len(attempts) >= 2:
                two_attempts.set()

    handler = Collect()
    logging.getLogger("fleet.background").addHandler(handler)
    try:
        async with asyncio.timeout(30):
            await two_attempts.wait()
    finally:
        logging.getLogger("fleet.background").removeHandler(handler)
        task.cancel()
        await db.close()
    for rec in attempts:
        assert rec.levelno == logging.WARNING and rec.exc_info is None, rec
        assert rec.getMessage().startswith("flushing host seen times failed; will retry: ")
        assert "\n" not in rec.getMessage()
    assert len(seen) == 1  # kept for the next attempt
