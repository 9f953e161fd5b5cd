"""The one error type of the console's handlers: an HTTP status and the reason shown to the user."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason
