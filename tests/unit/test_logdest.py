"""Log destinations: the contract every registered destination keeps, then the filesystem's
own guarantees (whole batches on a full disk, rotation).

The contract runs once per entry of `fleet.logdest.DESTINATIONS` and per log type, as the
broker tests run against both brokers. A new destination needs a `Sink` in `SINKS` (how to
configure it, read back what it wrote, and make it fail), or its contract test fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from fleet import config
from fleet.logdest import (
    DESTINATIONS,
    LogDestination,
    LogType,
    LogWriteError,
    UnknownDestination,
    create_destination,
    filesystem,
)
from fleet.logdest.filesystem import FilesystemDestination


@dataclass
class Sink:
    """Where one destination under test writes, seen from the test."""

    overrides: dict[str, Any]  # config keys that point the destination at this sink
    read: Callable[[], bytes]  # everything that reached the sink
    fail: Callable[[], None]  # make every write fail from now on
    recover: Callable[[], None]  # make writes succeed again


def filesystem_sink(request: pytest.FixtureRequest, log_type: LogType) -> Sink:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / f"osquery_{log_type}"
    key = "result_log_file" if log_type == "result" else "status_log_file"
    wrong = "status_log_file" if log_type == "result" else "result_log_file"

    def fail() -> None:  # the directory vanishes: the file can be neither found nor created
        logs.rename(tmp_path / "logs-gone")

    return Sink(
        overrides={f"filesystem.{key}": str(path), f"filesystem.{wrong}": str(logs / "other")},
        read=lambda: path.read_bytes() if path.exists() else b"",
        fail=fail,
        recover=logs.mkdir,
    )


def stdout_sink(request: pytest.FixtureRequest, log_type: LogType) -> Sink:
    captured: pytest.CaptureFixture[bytes] = request.getfixturevalue("capsysbinary")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    written = bytearray()
    working: list[Any] = []
    closed = io.TextIOWrapper(io.BytesIO())
    closed.buffer.close()

    def read() -> bytes:
        written.extend(captured.readouterr().out)
        return bytes(written)

    def fail() -> None:
        working.append(sys.stdout)
        monkeypatch.setattr(sys, "stdout", closed)

    return Sink(overrides={}, read=read, fail=fail,
                recover=lambda: monkeypatch.setattr(sys, "stdout", working.pop()))


SINKS: dict[str, Callable[[pytest.FixtureRequest, LogType], Sink]] = {
    "filesystem": filesystem_sink,
    "stdout": stdout_sink,
}


@dataclass
class Case:
    dest: LogDestination
    sink: Sink


@pytest.fixture(params=[(plugin, log_type) for plugin in DESTINATIONS
                        for log_type in ("result", "status")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def case(request: pytest.FixtureRequest) -> Case:
    plugin, log_type = request.param
    if plugin not in SINKS:
        pytest.fail(f"log destination {plugin!r} is registered but has no Sink in SINKS")
    sink = SINKS[plugin](request, log_type)
    cfg = config.from_mapping({**sink.overrides, f"osquery.{log_type}_log_plugin": plugin})
    return Case(create_destination(cfg, log_type), sink)


async def test_concurrent_batches_land_whole(case: Case) -> None:
    batches = [[f"{i}-{j}".encode() * 50 for j in range(20)] for i in range(200)]
    await asyncio.gather(*(case.dest.write(b) for b in batches))
    await case.dest.close()
    lines = case.sink.read().splitlines()
    assert sorted(lines) == sorted(line for b in batches for line in b)
    # A batch is never split by another one's lines.
    for batch in batches:
        start = lines.index(batch[0])
        assert lines[start:start + len(batch)] == batch


async def test_a_refused_batch_reaches_every_waiting_request_then_recovers(
        case: Case) -> None:
    await case.dest.write([b"before"])
    case.sink.fail()
    results = await asyncio.gather(*(case.dest.write([b"x"]) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, LogWriteError) for r in results), results
    case.sink.recover()
    await case.dest.write([b"after"])
    await case.dest.close()
    lines = case.sink.read().splitlines()
    assert lines[-1] == b"after" and b"x" not in lines


async def test_write_after_close_reopens(case: Case) -> None:
    await case.dest.write([b"one"])
    await case.dest.close()
    await case.dest.write([b"two"])
    await case.dest.close()
    assert case.sink.read() == b"one\ntwo\n"


async def test_empty_batch_writes_nothing(case: Case) -> None:
    await case.dest.write([])
    await case.dest.close()
    assert case.sink.read() == b""


def test_config_offers_exactly_the_registered_destinations() -> None:
    for key in ("osquery.status_log_plugin", "osquery.result_log_plugin"):
        assert config.OPTIONS_BY_KEY[key].choices == tuple(DESTINATIONS)
    with pytest.raises(config.ConfigError, match="'kafka' is not one of filesystem, stdout"):
        config.from_mapping({"osquery.result_log_plugin": "kafka"})


def test_an_unregistered_plugin_raises_instead_of_falling_back() -> None:
    """A path that skips config validation still cannot get a destination it did not name."""
    cfg = config.from_mapping({})
    cfg = dataclasses.replace(cfg, osquery=dataclasses.replace(cfg.osquery,
                                                               status_log_plugin="kafka"))
    with pytest.raises(UnknownDestination, match="status_log_plugin.*'kafka'"):
        create_destination(cfg, "status")


async def test_unexpected_sink_failure_still_answers_every_request(tmp_path: Path) -> None:
    dest = FilesystemDestination(str(tmp_path / "r.log"))

    def broken(_data: bytes) -> None:
        raise RuntimeError("sink bug")

    dest._append = broken  # type: ignore[method-assign, assignment]
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
    dest = FilesystemDestination(str(path))
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
    dest = FilesystemDestination(str(path))
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
        dest = FilesystemDestination(str(path))
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
