"""A full disk under the result log, through the agent's `/log` endpoint, on both backends:
the agent gets 413 and keeps its batch, the file holds only whole lines, the retry lands once."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fleet.logdest import filesystem
from fleet.service.context import ServiceContext
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below


async def test_disk_full_is_413_without_partial_line_or_duplicate(
        ctx: ServiceContext, agent: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    node_key = await enroll(agent)
    path = Path(ctx.cfg.filesystem.result_log_file)

    def results(first: int) -> dict[str, Any]:
        return {"node_key": node_key, "log_type": "result",
                "data": [{"name": "pack/Global/q", "hostIdentifier": "host-1",
                          "counter": first + i, "pad": "x" * 500} for i in range(10)]}

    r = await agent.post("/api/osquery/log", json=results(0))
    assert r.status_code == 200
    before = path.read_bytes()

    real_write = os.write
    disk_full = True

    def write(fd: int, data: Any) -> int:
        if disk_full:  # room for part of the batch only
            real_write(fd, bytes(data[:len(data) // 3]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(filesystem.os, "write", write)
    for _ in range(2):
        r = await agent.post("/api/osquery/log", json=results(10))
        assert r.status_code == 413
        assert "No space left on device" in r.json()["error"]
        assert path.read_bytes() == before
    disk_full = False
    r = await agent.post("/api/osquery/log", json=results(10))
    assert r.status_code == 200
    counters = [orjson.loads(line)["counter"] for line in path.read_bytes().splitlines()]
    assert counters == list(range(20))
