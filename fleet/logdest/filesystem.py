"""Append log lines to a file, off the event loop.

Writes run in a worker thread (a slow disk must not stall check-ins) and are serialized by a
lock so concurrent batches never interleave inside a line. The file is reopened when it was
moved or deleted (logrotate's default `create` mode), like Fleet's writer.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import BinaryIO

from fleet.logdest.base import LogWriteError


class FilesystemDestination:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: BinaryIO | None = None
        self._inode: int | None = None

    def _open(self) -> BinaryIO:
        fh = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        os.chmod(self.path, 0o644)
        self._fh, self._inode = fh, os.fstat(fh.fileno()).st_ino
        return fh

    def _current(self) -> BinaryIO:
        fh = self._fh
        if fh is not None:
            try:
                if os.stat(self.path).st_ino == self._inode:
                    return fh
            except FileNotFoundError:
                pass
            fh.close()
        return self._open()

    def _write_sync(self, lines: Sequence[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            try:
                fh = self._current()
                fh.write(data)
                fh.flush()
            except OSError as exc:
                self._fh = None
                raise LogWriteError(f"writing {self.path}: {exc.strerror or exc}") from exc

    async def write(self, lines: Sequence[bytes]) -> None:
        if lines:
            await asyncio.to_thread(self._write_sync, lines)

    async def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
