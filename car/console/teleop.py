"""Teleop over a WebSocket, with a deadman: a driver who vanishes leaves the car at neutral.

The client sends `{"steering": s, "throttle": t}` (each -1..1, + = left / forward) every 50 ms
while it drives, or `{"estop": true}`. When the connection closes, or no message has come
for DEADMAN_S while the car was being driven, the console publishes a neutral command at once, so
the car is at neutral within 250 ms of the client vanishing; the control mux's own teleop timeout
and the actuator watchdog stay behind it as further layers. A bad message is answered with
{"type": "error", "reason": ...} and the socket stays open; when the credential the socket was
opened with ends (logout, revocation, password change) it closes with 1008.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from car.console import bodies
from car.console.errors import ApiError
from car.console.node import ConsoleNode

DEADMAN_S = 0.18
DEADMAN_POLL_S = 0.02
MAX_MESSAGE_BYTES = 1024
CREDENTIAL_ENDED = 1008


def parse_teleop_message(text: str) -> dict[str, Any]:
    """A checked teleop message: {"estop": True} or {"steering": float, "throttle": float} (each
    -1..1); ValueError with the reason otherwise."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError(f"messages are at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message = bodies.parse_object(text, "a teleop message")
        if message.get("estop") is True:
            return {"estop": True}
        return {key: bodies.number(message, key, -1.0, 1.0) for key in ("steering", "throttle")}
    except ApiError as exc:
        raise ValueError(exc.reason) from None


class TeleopSession:
    """One driver on one socket. The emergency stop, the deadman and the commands act on the event
    loop itself, never queued behind the thread pool that serves uploads and logins."""

    def __init__(self, ws: WebSocket, node: ConsoleNode, ended: asyncio.Event, estop: Callable[[str], Awaitable[None]]):
        self.ws = ws
        self.node = node
        self.ended = ended
        self.estop = estop
        self.last_message = time.monotonic()
        self.driving = False

    def lost(self, reason: str) -> None:
        """The driver went silent or away: while it was driving, neutral and latched."""
        if self.driving:
            self.driving = False
            self.node.teleop_lost(reason)

    async def deadman(self) -> None:
        """Wakes exactly when the last command expires, so scheduling adds little to DEADMAN_S."""
        while True:
            wait = self.last_message + DEADMAN_S - time.monotonic()
            if not self.driving or wait > 0:
                await asyncio.sleep(wait if self.driving else DEADMAN_POLL_S)
                continue
            self.lost(f"teleop deadman: no command for {DEADMAN_S * 1000:.0f} ms")
            with contextlib.suppress(Exception):  # the client may be gone; the stop is what matters
                await self.ws.send_json({"type": "deadman", "reason": f"no command for {DEADMAN_S * 1000:.0f} ms"})

    async def handle(self, text: str) -> None:
        stamp = self.node.now()
        self.last_message = time.monotonic()
        try:
            message = parse_teleop_message(text)
        except ValueError as exc:
            self.lost(f"teleop: bad message ({exc})")
            await self.ws.send_json({"type": "error", "reason": str(exc)})
            return
        if message.get("estop"):
            self.driving = False
            await self.estop("teleop")
            await self.ws.send_json({"type": "estop"})
            return
        if self.node.mode != "manual":
            await self.ws.send_json({"type": "error", "reason": "teleop drives in manual mode; switch to manual"})
            return
        self.driving = message["steering"] != 0.0 or message["throttle"] != 0.0
        self.node.teleop(message["steering"], message["throttle"], stamp)

    async def close_when_ended(self) -> None:
        await self.ended.wait()
        self.lost("teleop: the login it was opened with ended")
        with contextlib.suppress(Exception):
            await self.ws.close(CREDENTIAL_ENDED, "logged out, token revoked or password changed")

    async def run(self) -> None:
        await self.ws.accept()
        watchdog = asyncio.create_task(self.deadman())
        closer = asyncio.create_task(self.close_when_ended())
        try:
            await self.ws.send_json({"type": "hello", "deadman_ms": round(DEADMAN_S * 1000)})
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect" or self.ended.is_set():
                    break
                await self.handle(message.get("text") or "")
        except WebSocketDisconnect:
            pass
        finally:
            watchdog.cancel()
            closer.cancel()
            self.lost("teleop client disconnected")
