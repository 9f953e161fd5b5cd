"""Connection limits for the console's HTTP server, so a flood of sockets cannot exhaust the car
nor lock its owner out.

uvicorn caps concurrent *requests* (`limit_concurrency`, answered 503) but not connections, and it
never closes a connection whose request line or headers do not complete. `GuardedH11Protocol` adds
both at the transport, counting connections in total, per client address and per address block
(a /24 or /64: on Wi-Fi, extra addresses are free). When a cap is full, a connection that has
never been let in with a session or token is evicted to make room: one from the address (then the
block) holding the most connections, one without a whole request head before one with, the oldest
first; when that one would be the newcomer itself, or every other connection counted against the
cap is authenticated, the newcomer is refused. So a stranger's churn only evicts strangers, and
the owner's new connection gets in. A connection must send a whole request head within
`header_timeout_s`, cut to `pressed_header_timeout_s` once half the connections are taken.
`GuardedWebSocketProtocol` closes a socket that pings more than `pings_per_s` a second or
whose writes back up past the transport's high-water mark (pongs are otherwise written with no
flow control). A rate-limited loop exception handler keeps a storm of accept errors (EMFILE) from
filling the disk with tracebacks.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("racer.console")

TOO_MANY_PINGS = 1008


@dataclass(frozen=True)
class ConnectionLimits:
    """Connections in all, per address and per /24 or /64 block; seconds to a whole request head
    (normally, and once half of `total` is taken); header and WebSocket message bytes; pings a
    WebSocket may send per second, with a burst."""

    total: int = 128
    per_client: int = 32
    per_block: int = 48
    header_timeout_s: float = 5.0
    pressed_header_timeout_s: float = 1.0
    max_header_bytes: int = 16 << 10
    max_websocket_message_bytes: int = 4096
    pings_per_s: float = 4.0
    ping_burst: int = 8


def address_block(host: str | None) -> str | None:
    """The /24 (IPv4, IPv4-mapped IPv6 included) or /64 (IPv6) that `host` lies in, as text."""
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class _Tally:
    """How many guarded HTTP connections each address and address block holds (a WebSocket, let
    in by the gate, is no longer counted here)."""

    def __init__(self) -> None:
        self.hosts: Counter[str | None] = Counter()
        self.blocks: Counter[str | None] = Counter()

    def add(self, host: str | None, block: str | None) -> None:
        self.hosts[host] += 1
        self.blocks[block] += 1

    def remove(self, host: str | None, block: str | None) -> None:
        for counter, key in ((self.hosts, host), (self.blocks, block)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An H11Protocol class enforcing `limits` (uvicorn's `http=` setting takes a protocol class;
    each call makes a class with its own tally, one per server)."""
    tally = _Tally()

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        opened = 0.0
        authenticated = False
        counted = False
        host: str | None = None
        block: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.opened = time.monotonic()
            self.host = self.client[0] if self.client else None
            self.block = address_block(self.host)
            tally.add(self.host, self.block)
            self.counted = True
            over = [(limits.total, lambda c: True) if len(self.connections) > limits.total else None,
                    (limits.per_client, self._sharing("host")) if tally.hosts[self.host] > limits.per_client
                    else None,
                    (limits.per_block, self._sharing("block")) if tally.blocks[self.block] > limits.per_block
                    else None]
            for cap, counted in filter(None, over):
                if not self._make_room(cap, [c for c in self.connections if counted(c)]):
                    self._uncount()
                    transport.abort()
                    return
            pressed = len(self.connections) * 2 > limits.total
            timeout = limits.pressed_header_timeout_s if pressed else limits.header_timeout_s
            self._header_timer = self.loop.call_later(timeout, self._incomplete)

        def _sharing(self, attr: str) -> Callable[[Any], bool]:
            """Connections still on HTTP with this one's `attr` (an upgraded WebSocket is in the server's
            connections too, but has left the per-address tally)."""
            return lambda c: isinstance(c, GuardedH11Protocol) and getattr(c, attr) == getattr(self, attr)

        def _make_room(self, cap: int, members: list[Any]) -> bool:
            """Keep `members` within `cap`: True when enough of them are already closing, else
            after aborting one that has never been let in: from the address, then the block,
            holding the most connections; one without a whole request head before one with; the
            oldest first. False when that one is this newcomer, or every other is authenticated."""
            live = [c for c in members if not c.transport.is_closing()]
            if len(live) <= cap:
                return True
            candidates = [c for c in live if isinstance(c, GuardedH11Protocol) and not c.is_authenticated()]
            victim = max(candidates, default=self, key=lambda c: (
                tally.hosts[c.host], tally.blocks[c.block], c is self or c._header_timer is not None, -c.opened))
            if victim is self:
                return False
            victim._uncount()
            victim.transport.abort()
            self.connections.discard(victim)  # at once: connection_lost comes on the next loop pass
            return True

        def _uncount(self) -> None:
            if self.counted:
                tally.remove(self.host, self.block)
                self.counted = False

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self._uncount()
            super().handle_websocket_upgrade(event)

        def is_authenticated(self) -> bool:
            """True once a request on this connection has passed the console's gate with a credential."""
            if not self.authenticated:
                scope = getattr(self, "scope", None)
                self.authenticated = bool(scope and scope.get("state", {}).get("credential"))
            return self.authenticated

        def on_response_complete(self) -> None:
            self.is_authenticated()  # before the next request head replaces the scope
            super().on_response_complete()

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
            self._uncount()
            super().connection_lost(exc)

    return GuardedH11Protocol


def guarded_websocket_protocol(limits: ConnectionLimits) -> type[WebSocketsSansIOProtocol]:
    """uvicorn's websockets-sansio protocol, closing a socket that floods pings or stops reading."""

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        _allowance = float(limits.ping_burst)
        _last_ping = 0.0

        def handle_ping(self) -> None:
            now = time.monotonic()
            self._allowance = min(float(limits.ping_burst),
                                  self._allowance + (now - self._last_ping) * limits.pings_per_s)
            self._last_ping = now
            if self._allowance < 1.0:
                self._refuse(f"more than {limits.pings_per_s:g} pings a second")
                return
            self._allowance -= 1.0
            super().handle_ping()

        def pause_writing(self) -> None:
            """The client does not read what is written to it: drop it rather than buffer more."""
            super().pause_writing()
            self.transport.abort()

        def _refuse(self, reason: str) -> None:
            if self.transport.is_closing():
                return
            self.conn.send_close(TOO_MANY_PINGS, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    return GuardedWebSocketProtocol


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
