"""Append log lines to a file, whole batches or nothing.

The file is reopened when it was moved or deleted (logrotate's default `create` mode), like
Fleet's writer. A batch that cannot be written completely (a full disk, a quota, an I/O
error) is cut back off the file: the agent gets a 413, keeps the batch and sends it again, so
leaving a partial record would glue a cut-off line to the next one and the retry would add a
duplicate. Writes go straight to the descriptor (no userspace buffer), so nothing of a failed
batch can linger in a buffer and reach the file later.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from fleet.logdest.base import LogType, LogWriteError, ThreadedLineWriter

if TYPE_CHECKING:
    from fleet.config import Config

log = logging.getLogger("fleet.logdest")


def from_config(cfg: Config, log_type: LogType) -> FilesystemDestination:
    """`filesystem.result_log_file` or `filesystem.status_log_file`."""
    fs = cfg.filesystem
    return FilesystemDestination(fs.result_log_file if log_type == "result"
                                 else fs.status_log_file)


class FilesystemDestination(ThreadedLineWriter):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None
        # Where a failed batch began when it could not be cut back off at the time; the next
        # write cuts the file back to it first.
        self._cut_to: int | None = None

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.fchmod(fd, 0o644)
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        return fd

    def _current(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                if os.stat(self.path).st_ino == self._inode:
                    return fd
            except FileNotFoundError:
                pass
            self._close()
            self._cut_to = None  # a new file holds nothing of that batch
        return self._open()

    def _append(self, data: bytes) -> None:
        try:
            fd = self._current()
            if self._cut_to is not None:
                _cut_back(fd, self._cut_to, self.path)
                self._cut_to = None
            start = os.fstat(fd).st_size
        except OSError as exc:
            self._close()
            raise LogWriteError(f"writing {self.path}: {exc.strerror or exc}") from exc
        try:
            _write_all(fd, data)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._cut_to = start
            raise LogWriteError(f"writing {self.path}: {exc.strerror or exc}") from exc

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _release(self) -> None:
        self._close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut_back(fd: int, offset: int, path: str) -> None:
    """Remove what a failed batch left after `offset`, if anything is still there."""
    size = os.fstat(fd).st_size
    if size > offset:
        os.ftruncate(fd, offset)
        log.warning("removed %d bytes of a partially written batch from the end of %s",
                    size - offset, path)
