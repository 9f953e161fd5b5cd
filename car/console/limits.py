"""Connection limits for the console's HTTP server, so a flood of sockets cannot exhaust the car.

uvicorn caps concurrent *requests* (`limit_concurrency`, answered 503) but not connections, and it
never closes a connection whose request line or headers do not complete. `GuardedH11Protocol` adds
both at the transport: a connection beyond the total or per-client cap is closed as soon as it is
accepted (its file descriptor is freed at once), and one that has not sent a whole request head
within `header_timeout_s` is closed. A rate-limited loop exception handler keeps a storm of accept
errors (EMFILE) from filling the disk with tracebacks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("racer.console")


@dataclass(frozen=True)
class ConnectionLimits:
    total: int = 128
    per_client: int = 32
    header_timeout_s: float = 5.0
    max_header_bytes: int = 16 << 10
    max_websocket_message_bytes: int = 4096


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An H11Protocol class enforcing `limits` (uvicorn's `http=` setting takes a protocol class)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            same = sum(1 for c in self.connections if (getattr(c, "client", None) or (None,))[0] == host)
            if len(self.connections) > limits.total or same > limits.per_client:
                transport.abort()
                return
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._incomplete)

        def _incomplete(self) -> None:
            self.transport.abort()

        def handle_events(self) -> None:
            super().handle_events()
            # h11 leaves IDLE once a whole request head is in (a WebSocket upgrade included, which
            # hands the transport to another protocol and must not be cut by this timer)
            if self.conn.their_state is not h11.IDLE and self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


class RateLimitedErrors:
    """A loop exception handler that logs at most one line per `period_s` and counts the rest."""

    def __init__(self, period_s: float = 10.0):
        self.period_s = period_s
        self.suppressed = 0
        self._last = float("-inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < self.period_s:
            self.suppressed += 1
            return
        exc = context.get("exception")
        extra = f" ({self.suppressed} more since the last one)" if self.suppressed else ""
        log.error("console server: %s%s%s", context.get("message", "error"),
                  f": {type(exc).__name__}: {exc}" if exc else "", extra)
        self._last, self.suppressed = now, 0
