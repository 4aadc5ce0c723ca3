"""Protocol-faithful simulated osquery agents for load-testing a Fleet server.

A pure client of the osquery TLS remote protocol (enroll, config, distributed, logger); it
shares no code with the ``fleet`` server package.
"""

from osquery_perf.agent import CycleResult, FlushResult, SimulatedAgent
from osquery_perf.queries import Answer, answer, run_sql
from osquery_perf.scheduler import Ticker
from osquery_perf.stats import AgentStats, FleetStats, Histogram
from osquery_perf.templates import TEMPLATES, HostData, OSTemplate, make_host, resolve_template
from osquery_perf.transport import (
    ConnectionPool,
    Endpoint,
    HTTPConnection,
    HttpxTransport,
    RequestTimeout,
    TransportError,
)

__all__ = [
    "TEMPLATES",
    "AgentStats",
    "Answer",
    "ConnectionPool",
    "CycleResult",
    "Endpoint",
    "FleetStats",
    "FlushResult",
    "HTTPConnection",
    "Histogram",
    "HostData",
    "HttpxTransport",
    "OSTemplate",
    "RequestTimeout",
    "SimulatedAgent",
    "Ticker",
    "TransportError",
    "answer",
    "make_host",
    "resolve_template",
    "run_sql",
]
