"""osquery log destinations, chosen by `osquery.{status,result}_log_plugin`."""

from __future__ import annotations

from fleet.logdest.base import LogDestination, LogWriteError
from fleet.logdest.filesystem import FilesystemDestination
from fleet.logdest.stdout import StdoutDestination


def create_destination(plugin: str, path: str) -> LogDestination:
    if plugin == "stdout":
        return StdoutDestination()
    return FilesystemDestination(path)


__all__ = ["LogDestination", "LogWriteError", "create_destination"]
