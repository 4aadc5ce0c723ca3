"""osquery log destinations, registered by plugin name.

`DESTINATIONS` maps each `osquery.{status,result}_log_plugin` value to a factory that builds
the destination from the whole configuration, so a destination reads its own config section
(`filesystem.*` today; `firehose.*`, `kafka.*` ... later). The config derives the options'
choices from this table, so a name not registered here is refused at start, and
`create_destination` raises for it rather than falling back to another destination.

Adding a destination: a module with a `from_config(cfg, log_type)` factory and one entry
here. Blocking SDKs subclass `ThreadedLineWriter`; async sinks implement `LogDestination`
directly. tests/unit/test_logdest.py runs its contract over every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fleet.logdest import filesystem, stdout
from fleet.logdest.base import LogDestination, LogType, LogWriteError

if TYPE_CHECKING:
    from fleet.config import Config

DestinationFactory = Callable[["Config", LogType], LogDestination]

DESTINATIONS: dict[str, DestinationFactory] = {
    "filesystem": filesystem.from_config,
    "stdout": stdout.from_config,
}


class UnknownDestination(ValueError):
    """No destination is registered under the configured plugin name."""


def create_destination(cfg: Config, log_type: LogType) -> LogDestination:
    """The destination `osquery.<log_type>_log_plugin` names, built from `cfg`."""
    plugin = (cfg.osquery.result_log_plugin if log_type == "result"
              else cfg.osquery.status_log_plugin)
    factory = DESTINATIONS.get(plugin)
    if factory is None:
        raise UnknownDestination(
            f"osquery.{log_type}_log_plugin: no log destination named {plugin!r} "
            f"(registered: {', '.join(DESTINATIONS)})")
    return factory(cfg, log_type)


__all__ = ["DESTINATIONS", "DestinationFactory", "LogDestination", "LogType", "LogWriteError",
           "UnknownDestination", "create_destination"]
