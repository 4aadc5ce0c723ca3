"""`fleetctl trigger --name NAME`: ask the server for an ad hoc run of a cron schedule.

As in Go fleetctl, a schedule that is already running (409) or a name the server does not
know (404, its answer lists the valid names) is reported on stdout with `[!]` and is not a
failure: the request was understood, there is just nothing to start.
"""

from __future__ import annotations

import argparse

from fleetctl.client import APIError, FleetClient
from fleetctl.context import load_context
from fleetctl.errors import CLIError


def trigger(args: argparse.Namespace) -> int:
    name: str = args.name or ""
    with FleetClient(load_context(args.config, args.context), debug=args.debug) as client:
        try:
            client.trigger_schedule(name)
        except APIError as exc:
            if exc.status not in (404, 409):
                raise CLIError(f"could not trigger the {name} schedule: {exc}") from None
            print(f"[!] {_not_started(name, exc)}")
            return 0
    print(f"[+] Sent request to trigger {name} schedule")
    return 0


def _not_started(name: str, exc: APIError) -> str:
    """The server's reason, capitalized; without --name, 'invalid name' says what to do."""
    text = exc.reasons[0] if exc.reasons else exc.message
    if not name:
        text = text.lower().replace("invalid name", "name must be specified", 1)
    return text[:1].upper() + text[1:]
