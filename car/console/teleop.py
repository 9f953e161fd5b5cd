"""Teleop over a WebSocket, with a deadman: a driver who vanishes leaves the car at neutral.

The client sends `{"steering": s, "throttle": t}` (each -1..1, + = left / forward) every 50 ms
while it drives, or `{"estop": true}`. When the connection closes, or no message has come
for DEADMAN_S while the car was being driven, the console publishes a neutral command at once, so
the car is at neutral within 250 ms of the client vanishing; the control mux's own teleop timeout
and the actuator watchdog stay behind it as further layers.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from car.console.node import ConsoleNode
from car.control.modes import Mode, brief

DEADMAN_S = 0.18
DEADMAN_POLL_S = 0.02
MAX_MESSAGE_BYTES = 1024


def _axis(message: dict[str, Any], key: str) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not math.isfinite(value)) or not -1 <= value <= 1:
        raise ValueError(f"{key} must be a number in -1..1, got {brief(value)}")
    return float(value)


def parse_command(text: str) -> dict[str, Any]:
    """A checked teleop message: {"estop": True} or {"steering": float, "throttle": float}."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError(f"messages are at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        raise ValueError("messages must be JSON objects") from None
    if not isinstance(message, dict):
        raise ValueError("messages must be JSON objects")
    if message.get("estop") is True:
        return {"estop": True}
    return {key: _axis(message, key) for key in ("steering", "throttle")}


class TeleopSession:
    """One driver on one socket. The emergency stop, the deadman and the commands act on the event
    loop itself, never queued behind the thread pool that serves uploads and logins."""

    def __init__(self, ws: WebSocket, node: ConsoleNode):
        self.ws = ws
        self.node = node
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
            command = parse_command(text)
        except ValueError as exc:
            self.lost(f"teleop: bad message ({exc})")
            await self.ws.send_json({"type": "error", "reason": str(exc)})
            return
        if command.get("estop"):
            self.driving = False
            self.node.runtime.command("emergency_stop")
            await self.ws.send_json({"type": "estop"})
            return
        if self.node.stack.control.core.state.mode is not Mode.MANUAL:
            await self.ws.send_json({"type": "error", "reason": "teleop drives in manual mode; switch to manual"})
            return
        self.driving = command["steering"] != 0.0 or command["throttle"] != 0.0
        self.node.teleop(command["steering"], command["throttle"], stamp)

    async def run(self) -> None:
        await self.ws.accept()
        watchdog = asyncio.create_task(self.deadman())
        try:
            await self.ws.send_json({"type": "hello", "deadman_ms": round(DEADMAN_S * 1000)})
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self.handle(message.get("text") or "")
        except WebSocketDisconnect:
            pass
        finally:
            watchdog.cancel()
            self.lost("teleop client disconnected")
