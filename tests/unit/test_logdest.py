"""The log writer thread: group commits that keep lines whole and report failures."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fleet.logdest import LogWriteError, create_destination


async def test_concurrent_batches_land_whole_and_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "result.log"
    dest = create_destination("filesystem", str(path))
    batches = [[f"{i}-{j}".encode() * 50 for j in range(20)] for i in range(200)]
    await asyncio.gather(*(dest.write(b) for b in batches))
    await dest.close()
    lines = path.read_bytes().splitlines()
    assert sorted(lines) == sorted(line for b in batches for line in b)
    # A batch is never split by another one's lines.
    for batch in batches:
        start = lines.index(batch[0])
        assert lines[start:start + len(batch)] == batch


async def test_failed_write_reaches_every_waiting_request(tmp_path: Path) -> None:
    blocked = tmp_path / "no-such-dir" / "result.log"
    dest = create_destination("filesystem", str(blocked))
    results = await asyncio.gather(*(dest.write([b"x"]) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, LogWriteError) for r in results)
    # The destination recovers once the sink does.
    os.mkdir(blocked.parent)
    await dest.write([b"after"])
    await dest.close()
    assert blocked.read_bytes() == b"after\n"


async def test_write_after_close_reopens(tmp_path: Path) -> None:
    path = tmp_path / "status.log"
    dest = create_destination("filesystem", str(path))
    await dest.write([b"one"])
    await dest.close()
    await dest.write([b"two"])
    await dest.close()
    assert path.read_bytes() == b"one\ntwo\n"


async def test_empty_batch_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    dest = create_destination("filesystem", str(path))
    await dest.write([])
    await dest.close()
    assert not path.exists()


async def test_unexpected_sink_failure_still_answers_every_request(tmp_path: Path) -> None:
    dest = create_destination("filesystem", str(tmp_path / "r.log"))

    def broken(_data: bytes) -> None:
        raise RuntimeError("sink bug")

    dest._append = broken  # type: ignore[attr-defined]
    results = await asyncio.wait_for(asyncio.gather(
        *(dest.write([b"x"]) for _ in range(3)), return_exceptions=True), 5)
    assert all(isinstance(r, LogWriteError) and "sink bug" in str(r) for r in results)
    await dest.close()
