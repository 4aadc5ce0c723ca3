"""Fleet, in Python: an osquery fleet-management server."""

__version__ = "0.1.0"
