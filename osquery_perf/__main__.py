"""``python -m osquery_perf``."""

from osquery_perf.cli import main

raise SystemExit(main())
