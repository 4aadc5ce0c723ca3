"""The periodic cleanups and aggregations one instance runs.

`cleanups_then_aggregation` is Fleet's schedule of that name. Fleet runs it hourly under the
lock "leader"; here it runs every minute, as the cleanups did before they had a schedule,
because abandoned live-query campaigns are meant to be completed within about a minute
(Fleet's cleanup completes waiting campaigns older than one).

`software_host_counts` recounts every software version's and title's hosts: a scan of every
host's software (minutes of database time at 100,000 hosts), so it runs hourly, as Fleet's
counts do (its `vulnerabilities` schedule, `vulnerabilities.periodicity`, 1 h).
"""

from __future__ import annotations

from fleet.jobs.schedule import Schedule
from fleet.service import campaigns, host_admin, sessions, software

CLEANUP_INTERVAL = 60.0
SOFTWARE_COUNTS_INTERVAL = 3600.0

CLEANUPS_THEN_AGGREGATION = Schedule(
    name="cleanups_then_aggregation", interval=CLEANUP_INTERVAL, lock_name="leader",
    jobs=(("distributed_query_campaigns", campaigns.cleanup_stale),
          ("expired_sessions", sessions.cleanup_expired),
          ("expired_hosts", host_admin.expire_hosts)))

SOFTWARE_HOST_COUNTS = Schedule(
    name="software_host_counts", interval=SOFTWARE_COUNTS_INTERVAL,
    jobs=(("software_host_counts", software.refresh_counts),))
