"""Domain errors raised by the service layer; transports map them to their own envelopes."""

from __future__ import annotations


class FleetError(Exception):
    """Base of every expected, user-facing failure. `reason` is shown to the user."""

    status = 500
    message = "Internal Server Error"

    def __init__(self, reason: str, *, name: str = "base") -> None:
        super().__init__(reason)
        self.reason = reason
        self.name = name


class BadRequest(FleetError):
    status, message = 400, "Bad request"


class AuthenticationFailed(FleetError):
    status, message = 401, "Authentication failed"


class PermissionDenied(FleetError):
    status, message = 403, "Permission Denied"


class NotFound(FleetError):
    status, message = 404, "Resource Not Found"

    @classmethod
    def of(cls, what: str) -> NotFound:
        """Fleet's reason for a missing object: `NotFound.of(f"Host with id={id}")`."""
        return cls(f"{what} was not found in the datastore")


class MethodNotAllowed(FleetError):
    status, message = 405, "Method Not Allowed"


class AlreadyExists(FleetError):
    status, message = 409, "Resource Already Exists"


class Conflict(FleetError):
    status, message = 409, "Conflict"


class ValidationFailed(FleetError):
    status, message = 422, "Validation Failed"


class RateLimited(FleetError):
    status, message = 429, "Too Many Requests"

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ServiceUnavailable(FleetError):
    status, message = 503, "Service Unavailable"


class NodeInvalid(FleetError):
    """osquery agent authentication failed; the agent must (re-)enroll."""

    status, message = 401, "Authentication failed"


class PayloadTooLarge(FleetError):
    status, message = 413, "Payload Too Large"
