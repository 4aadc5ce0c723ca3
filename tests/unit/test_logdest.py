"""The log writer thread: group commits that keep lines whole and report failures."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from fleet.logdest import LogWriteError, create_destination, filesystem


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


def _partial_then_enospc(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """os.write as on a disk that fills up mid-batch: the next write stores half of its
    bytes, then raises ENOSPC. Returns a switch: append 1 to arm it for one write."""
    armed: list[int] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if armed:
            armed.pop()
            real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(filesystem.os, "write", write)
    return armed


async def test_failed_batch_is_cut_back_and_its_retry_lands_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "result.log"
    dest = create_destination("filesystem", str(path))
    await dest.write([b'{"n":1}', b'{"n":2}'])
    armed = _partial_then_enospc(monkeypatch)
    batch = [b'{"n":3}' * 100, b'{"n":4}' * 100]
    for _ in range(3):  # the agent keeps retrying while the disk is full
        armed.append(1)
        with pytest.raises(LogWriteError, match="No space left on device"):
            await dest.write(batch)
        assert path.read_bytes() == b'{"n":1}\n{"n":2}\n'
    await dest.write(batch)  # space again: the retry lands once, whole
    await dest.close()
    assert path.read_bytes().splitlines() == [b'{"n":1}', b'{"n":2}', *batch]
    failing = [r for r in caplog.records if "log destination failing" in r.getMessage()]
    assert len(failing) == 1 and "No space left on device" in failing[0].getMessage()
    assert any("recovered after refusing 3 batch(es)" in r.getMessage()
               for r in caplog.records)


async def test_partial_batch_that_could_not_be_cut_is_repaired_before_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "result.log"
    dest = create_destination("filesystem", str(path))
    await dest.write([b"first"])
    armed = _partial_then_enospc(monkeypatch)
    real_ftruncate = os.ftruncate
    broken = [1]

    def ftruncate(fd: int, size: int) -> None:
        if broken:
            broken.pop()
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_ftruncate(fd, size)

    monkeypatch.setattr(filesystem.os, "ftruncate", ftruncate)
    armed.append(1)
    with pytest.raises(LogWriteError):
        await dest.write([b"x" * 1000, b"y" * 1200])
    assert not path.read_bytes().endswith(b"\n")  # a cut-off record is on disk for now
    await dest.write([b"second"])
    await dest.close()
    assert path.read_bytes() == b"first\nsecond\n"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a tmpfs needs root")
async def test_real_full_disk_leaves_only_whole_lines(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        path = mount / "result.log"
        dest = create_destination("filesystem", str(path))
        delivered: list[bytes] = []
        refused = 0
        for i in range(400):  # ~560 KiB offered to a 256 KiB disk
            batch = [orjson.dumps({"batch": i, "line": j, "pad": "x" * 300})
                     for j in range(4)]
            try:
                await dest.write(batch)
            except LogWriteError as exc:
                assert "No space left on device" in str(exc)
                refused += 1
                continue
            delivered += batch
        assert refused > 0
        on_disk = path.read_bytes()
        assert on_disk.endswith(b"\n")
        assert on_disk.splitlines() == delivered  # no partial line, nothing lost or doubled
        path.unlink()  # room again: the destination reopens and goes on
        await dest.write([b"after"])
        await dest.close()
        assert path.read_bytes() == b"after\n"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
