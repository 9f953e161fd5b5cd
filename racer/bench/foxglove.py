"""A Foxglove WebSocket client from the protocol's public spec (foxglove.websocket.v1), not the SDK's:
what `racer bench` connects to measure the car with a viewer attached, and what the tests decode with.

It offers both names of the protocol: `foxglove.websocket.v1` and `foxglove.sdk.v1`, the name Foxglove's
SDK servers accept since 2025 for the same messages (the SDK refuses the old name with HTTP 400).

The server speaks first, in JSON text frames: `serverInfo`, then `advertise` with its channels (id, topic,
encoding, schemaName, schema, schemaEncoding). A client sends `subscribe` with its own subscription ids;
each message then comes as a binary frame: opcode 0x01, subscription id (uint32 LE), log time (uint64 LE,
ns), payload in the channel's encoding.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from websockets.sync.client import ClientConnection, connect

SUBPROTOCOLS = ("foxglove.websocket.v1", "foxglove.sdk.v1")
MESSAGE_DATA = 0x01


@dataclass(frozen=True)
class Message:
    channel: dict[str, Any]
    log_time_ns: int
    payload: bytes


class FoxgloveClient:
    """Connects to `url` and reads the server's hello (serverInfo and the advertised channels)."""

    def __init__(self, url: str, timeout_s: float = 10.0, **connect_options: Any):
        self.ws: ClientConnection = connect(url, subprotocols=list(SUBPROTOCOLS), open_timeout=timeout_s,
                                            max_size=2**24, legacy=True, **connect_options)
        self.server_info: dict[str, Any] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self._subscriptions: dict[int, int] = {}
        self.server_info = self._control(timeout_s)
        if self.server_info.get("op") != "serverInfo":
            raise ValueError(f"expected serverInfo first, got {self.server_info.get('op')!r}")

    def _control(self, timeout_s: float) -> dict[str, Any]:
        """The next text frame as JSON (advertisements are kept)."""
        while True:
            frame = self.ws.recv(timeout_s)
            if isinstance(frame, bytes):
                continue
            message = json.loads(frame)
            if message.get("op") == "advertise":
                self.channels.update({c["id"]: c for c in message["channels"]})
            return message

    def wait_for_channels(self, topics: set[str], timeout_s: float = 10.0) -> None:
        while not topics <= {c["topic"] for c in self.channels.values()}:
            self._control(timeout_s)

    def subscribe(self, topics: set[str] | None = None) -> None:
        """Subscribe to the channels on `topics` (default: every advertised one); subscription id = channel id."""
        chosen = [c for c in self.channels.values() if topics is None or c["topic"] in topics]
        self._subscriptions.update({c["id"]: c["id"] for c in chosen})
        self.ws.send(json.dumps({"op": "subscribe",
                                 "subscriptions": [{"id": c["id"], "channelId": c["id"]} for c in chosen]}))

    def next_message(self, timeout_s: float = 10.0) -> Message:
        """The next messageData frame (control frames in between are read and kept)."""
        while True:
            frame = self.ws.recv(timeout_s)
            if isinstance(frame, str):
                message = json.loads(frame)
                if message.get("op") == "advertise":
                    self.channels.update({c["id"]: c for c in message["channels"]})
                continue
            if frame[0] != MESSAGE_DATA:
                continue
            subscription, log_time = struct.unpack_from("<IQ", frame, 1)
            return Message(self.channels[self._subscriptions[subscription]], log_time, frame[13:])

    def close(self) -> None:
        self.ws.close()
