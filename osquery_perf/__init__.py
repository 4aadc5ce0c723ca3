"""Protocol-faithful simulated osquery agents for load-testing a Fleet server.

A pure client of the osquery TLS remote protocol (enroll, config, distributed, logger); it
shares no code with the ``fleet`` server package.
"""

from osquery_perf.agent import CycleResult, FlushResult, SimulatedAgent
from osquery_perf.queries import Answer, answer, run_sql
from osquery_perf.stats import AgentStats, Histogram
from osquery_perf.templates import TEMPLATES, HostData, OSTemplate, make_host, resolve_template

__all__ = [
    "TEMPLATES",
    "AgentStats",
    "Answer",
    "CycleResult",
    "FlushResult",
    "Histogram",
    "HostData",
    "OSTemplate",
    "SimulatedAgent",
    "answer",
    "make_host",
    "resolve_template",
    "run_sql",
]
