"""The token gate in front of the Foxglove server when it is served beyond loopback.

Foxglove's WebSocket protocol has no authentication, so on another address the SDK's server listens
on loopback only, and this gate, on the address the user asked for, lets a connection through only
when its upgrade request carries a console API token: `ws://HOST:PORT/?token=TOKEN` (what the Foxglove
app can send; a browser cannot set headers) or `Authorization: Bearer TOKEN`. Anything else gets
HTTP 401 and is closed before a byte reaches the server. The token is checked again every
`RECHECK_S` while the viewer watches, so a token revoked, expired or dropped by a password change ends
its viewers within that time.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("racer.foxglove")

HEAD_TIMEOUT_S = 5.0
HEAD_LIMIT = 16 * 1024
RECHECK_S = 1.0
REFUSED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def request_token(head: bytes) -> str:
    """The token of an HTTP request head (query `token`, else an Authorization bearer); "" when none."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) == 3:
        token = parse_qs(urlsplit(parts[1]).query).get("token")
        if token:
            return token[0]
    for line in lines[1:]:
        name, _, value = line.partition(":")
        scheme, _, credential = value.strip().partition(" ")
        if name.strip().lower() == "authorization" and scheme.lower() == "bearer":
            return credential.strip()
    return ""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class TokenGate:
    """Listens on (`host`, `port`) from construction (OSError when it cannot bind) and passes connections whose
    token `valid` accepts on to 127.0.0.1:`upstream`, on a thread of its own."""

    def __init__(self, host: str, port: int, upstream: int, valid: Callable[[str], bool]):
        self.upstream, self.valid = upstream, valid
        self.refused = self.revoked = 0
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, host, port, limit=HEAD_LIMIT))
        except BaseException:
            self._loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, name="foxglove gate", daemon=True)
        self._thread.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if not self.valid(request_token(head)):
            self.refused += 1
            log.warning("foxglove: refused %s without a valid token", writer.get_extra_info("peername"))
            writer.write(REFUSED)
            try:
                await writer.drain()
            finally:
                writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        up_writer.write(head)
        pipes = asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        while not pipes.done():
            await asyncio.wait([pipes], timeout=RECHECK_S)
            if not pipes.done() and not self.valid(request_token(head)):
                self.revoked += 1
                log.warning("foxglove: closed %s: its token is no longer valid", writer.get_extra_info("peername"))
                writer.close()
                up_writer.close()
                await asyncio.wait([pipes], timeout=RECHECK_S)
                break

    def close(self) -> None:
        """Stop listening and end the gate's thread (connections through it end with the SDK's server)."""
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
