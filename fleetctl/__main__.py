"""Allow `python -m fleetctl`."""

from fleetctl.cli import main

raise SystemExit(main())
