"""Fleet's `cleanups_then_aggregation` schedule: the periodic cleanups one instance runs.

Fleet runs it hourly under the lock "leader"; here it runs every minute, as the cleanups
did before they had a schedule, because abandoned live-query campaigns are meant to be
completed within about a minute (Fleet's cleanup completes waiting campaigns older than one).
"""

from __future__ import annotations

from fleet.jobs.schedule import Schedule
from fleet.service import campaigns, sessions, software

CLEANUP_INTERVAL = 60.0

CLEANUPS_THEN_AGGREGATION = Schedule(
    name="cleanups_then_aggregation", interval=CLEANUP_INTERVAL, lock_name="leader",
    jobs=(("distributed_query_campaigns", campaigns.cleanup_stale),
          ("expired_sessions", sessions.cleanup_expired),
          ("software_host_counts", software.refresh_counts)))
