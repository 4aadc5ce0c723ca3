"""fleetctl: command-line client for the Fleet REST API (a pure HTTP/websocket client)."""

__version__ = "0.1.0"
