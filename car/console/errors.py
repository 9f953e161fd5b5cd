"""The one error type of the console's handlers: an HTTP status and the reason shown to the user."""
from __future__ import annotations

from car.policy.archive import DISK_FULL

MAX_REASON_CHARS = 300


def short(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` on one line, cut to `limit` characters: a reason is shown in answers, in
    /api/status on every poll and in the log, so hostile text (a 64 MiB member name) never is."""
    text = " ".join(text[:limit * 4].split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ApiError(Exception):
    """`reason` is cut to MAX_REASON_CHARS (short)."""

    def __init__(self, status: int, reason: str):
        reason = short(reason)
        super().__init__(reason)
        self.status = status
        self.reason = reason


def storage_error(exc: OSError, what: str) -> ApiError:
    """A write of `what` that failed: 507 Insufficient Storage when the disk is full, else 500."""
    if exc.errno in DISK_FULL:
        return ApiError(507, f"the car's disk is full: cannot store {what} ({exc.strerror})")
    return ApiError(500, f"cannot store {what}: {exc.strerror or exc}")
