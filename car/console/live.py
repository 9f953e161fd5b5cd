"""The open WebSockets and streams, each with the credential it was opened with.

A socket outlives the request that authenticated it, so logout, token revocation, expiry and a
password change (`racer passwd`, from another process) must reach it too. While any socket is
open, one task on the console's event loop checks every `period_s` whether each one's credential
still lets its holder in, and ends those whose credential does not: the holder's `ended` event is
set, and the teleop socket closes with 1008, the camera stream ends. Checking (a dict look-up and a
stat of the password and token files) rather than being told keeps one path for every way a
credential can end.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from car.console.auth import Credential

CHECK_PERIOD_S = 0.02


@dataclass(eq=False)
class Held:
    """One open socket or stream; `ended` is set when its credential no longer lets it in."""

    credential: Credential
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class LiveConnections:
    """The open sockets and streams; `stopping` is set when the console stops, which ends every
    stream (an endless one would otherwise hold the server's shutdown)."""

    def __init__(self, alive: Callable[[Credential], bool], period_s: float = CHECK_PERIOD_S):
        self.alive = alive
        self.period_s = period_s
        self.stopping = threading.Event()
        self._held: set[Held] = set()
        self._watcher: asyncio.Task[None] | None = None

    @staticmethod
    def of(connection: HTTPConnection) -> LiveConnections:
        """The live connections of the app `connection` reached (car.console.app keeps them in its state)."""
        live: LiveConnections = connection.app.state.live
        return live

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, credential: Credential) -> AsyncIterator[Held]:
        """Register a socket for as long as the block runs (on the console's event loop)."""
        held = Held(credential)
        self._held.add(held)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            yield held
        finally:
            self._held.discard(held)

    async def _watch(self) -> None:
        while self._held:
            held = [h for h in self._held if not h.ended.is_set()]
            verdicts = {credential: self.alive(credential) for credential in {h.credential for h in held}}
            for one in held:
                if not verdicts[one.credential]:
                    one.ended.set()
            await asyncio.sleep(self.period_s)
