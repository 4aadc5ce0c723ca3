"""Append log lines to a file.

The file is reopened when it was moved or deleted (logrotate's default `create` mode), like
Fleet's writer.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from fleet.logdest.base import LogWriteError, ThreadedLineWriter


class FilesystemDestination(ThreadedLineWriter):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
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

    def _append(self, data: bytes) -> None:
        try:
            fh = self._current()
            fh.write(data)
            fh.flush()
        except OSError as exc:
            self._fh = None
            raise LogWriteError(f"writing {self.path}: {exc.strerror or exc}") from exc

    def _release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
