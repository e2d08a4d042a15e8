"""Domain errors. One root, one subclass per condition; the docstring is the message.

The HTTP layers map these to statuses (bot API and client API each in one
middleware). A 500 is always a bug: anything a caller can cause is one of these.
"""

from __future__ import annotations


class DroverError(Exception):
    """Something went wrong."""

    status = 500
    grpc_code = "INTERNAL"

    def __init__(self, detail: str = "") -> None:
        doc = (type(self).__doc__ or "").strip().rstrip(".")
        self.detail = detail
        super().__init__(f"{doc}: {detail}" if detail else doc)


class InvalidRequest(DroverError):
    """Invalid request."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(DroverError):
    """Not authenticated."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class PermissionDenied(DroverError):
    """Permission denied."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(DroverError):
    """Not found."""

    status = 404
    grpc_code = "NOT_FOUND"


class TaskNotFound(NotFound):
    """No such task."""


class BotNotFound(NotFound):
    """No such bot."""


class Conflict(DroverError):
    """The request conflicts with the current state."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"


class Unavailable(DroverError):
    """Temporarily unavailable, retry later."""

    status = 503
    grpc_code = "UNAVAILABLE"
