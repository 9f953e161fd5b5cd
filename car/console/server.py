"""Starting the console beside a running car: state dir, password, certificate, web server, mDNS.

The web server runs in its own thread with its own event loop and reaches the graph only through
the console node's bus. It binds its socket before returning, so a taken port fails the start rather
than a background thread; whoever started it stops it. It answers only to the
host names and addresses it serves (`served_hosts`), and takes the client's address from the
socket: X-Forwarded-For and friends are ignored.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from car.clock import Clock
from car.console.app import Console, create_app
from car.console.auth import Auth, ensure_password
from car.console.calibration import CalibrationFormat, CalibrationService
from car.console.limits import RateLimitedErrors, guarded_protocol, guarded_websocket_protocol
from car.console.mdns import Advertisement, addresses, service_info
from car.console.models import LoadingStatus, ModelStore
from car.console.node import ConsoleNode
from car.console.state import StateDir, remove_temporary
from car.console.tls import LOOPBACK_NAMES, ensure_certificate, is_loopback
from car.console.uploads import UploadLimits, remove_stale
from car.transport import NodeBus

log = logging.getLogger("racer.console")


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [ADDR]:PORT) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--console {text!r}: expected HOST:PORT, e.g. 0.0.0.0:443 or 127.0.0.1:8080")
    return host.strip("[]"), int(port)


@dataclass
class ConsoleOptions:
    host: str
    port: int
    state_dir: Path
    calibration_file: Path | None = None
    limits: UploadLimits = field(default_factory=UploadLimits)
    tls: bool | None = None
    advertise: bool = True
    startup_model: Path | None = None
    extra_hosts: tuple[str, ...] = ()

    @property
    def secure(self) -> bool:
        """HTTPS unless told otherwise or bound to loopback, where nobody else can listen in."""
        return self.tls if self.tls is not None else not is_loopback(self.host)


class ConsoleServer:
    """A running console; `url` is where it answers, `stop()` ends it."""

    def __init__(self, console: Console, sock: socket.socket, ssl: tuple[Path, Path] | None,
                 advertisement: Advertisement | None):
        self.console = console
        self.sock = sock
        host, port = sock.getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.url = f"{'https' if ssl else 'http'}://{f'[{shown}]' if ':' in shown else shown}:{port}"
        self.app = create_app(console)
        limits = console.connection_limits
        config = uvicorn.Config(self.app, http=guarded_protocol(limits), ws=guarded_websocket_protocol(limits),
                                lifespan="off",
                                log_level="warning", server_header=False, ssl_certfile=ssl[0] if ssl else None,
                                ssl_keyfile=ssl[1] if ssl else None, timeout_graceful_shutdown=1,
                                timeout_keep_alive=5, h11_max_incomplete_event_size=limits.max_header_bytes,
                                ws_max_size=limits.max_websocket_message_bytes, ws_per_message_deflate=False,
                                # the guard keeps connections within limits.total; uvicorn would answer 503 at it
                                limit_concurrency=limits.total + 1, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.errors = RateLimitedErrors()
        self.advertisement = advertisement
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="console", daemon=True)

    async def _serve(self) -> None:
        asyncio.get_running_loop().set_exception_handler(self.errors)
        await self.server.serve(sockets=[self.sock])

    def start(self) -> ConsoleServer:
        self._thread.start()
        if self.advertisement is not None:
            threading.Thread(target=self.advertisement.start, name="mdns", daemon=True).start()
        return self

    def stop(self) -> None:
        self.console.stopping.set()
        self.server.should_exit = True
        if self.advertisement is not None:
            self.advertisement.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=3.0)
        self.sock.close()


def served_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names the console answers to: loopback, the bound address (or, bound to all, every
    interface's address), the car's host name with and without .local, and `extra`."""
    hostname = (socket.gethostname() or "racer").lower()
    bound = bind_host.strip("[]")
    names = {*LOOPBACK_NAMES, "127.0.0.1", "::1", hostname, f"{hostname}.local", *extra}
    names.update(addresses(bind_host) if bound in ("0.0.0.0", "::", "") else [bound])
    return frozenset(name.lower() for name in names if name)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise OSError(f"console cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def recover_state(state: StateDir, store: ModelStore) -> None:
    """What a crash (kill -9, power cut) left in the state dir, removed before anything reads it:
    unfinished uploads, half-replaced or half-deleted model folders, temporary files of atomic writes."""
    stale = remove_stale(state.uploads)
    if stale:
        log.info("console removed %d unfinished upload file(s) from %s", stale, state.uploads)
    store.remove_stale()
    temporary = remove_temporary(state)
    if temporary:
        log.info("console removed %d temporary file(s) of interrupted writes from %s", temporary, state.root)


def start_console(options: ConsoleOptions, bus: NodeBus, clock: Clock, params: dict[str, dict[str, Any]],
                  model_name: str, calibration: CalibrationFormat, car_calibration: Any = None) -> ConsoleServer:
    """Serve the console as a node on `bus` (call before the bus spins: a process bus subscribes only
    then). On the first start a password is generated and written to a file only the owner can read;
    its path (never the password) is printed to stderr."""
    state = StateDir(options.state_dir).create()
    store = ModelStore(state.models, state.cache, options.startup_model)
    recover_state(state, store)
    password_file = ensure_password(state)
    secure = options.secure
    certificate = ensure_certificate(state.tls, options.host) if secure else None
    node = ConsoleNode(bus, clock, params, model_name)
    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    console = Console(
        node=node, auth=Auth(state), store=store,
        calibration=CalibrationService(node, options.calibration_file or state.calibration, calibration,
                                       car_calibration),
        state=state, limits=options.limits, secure=secure,
        fingerprint=certificate.fingerprint if certificate else None, loading=LoadingStatus(model=model_name),
        hosts=served_hosts(options.host, options.extra_hosts),
        # browsers share cookies between ports of one host; __Host- also pins it to this origin over HTTPS
        cookie=f"{'__Host-' if secure else ''}racer_session_{port}")
    advertisement = None
    if options.advertise and not is_loopback(options.host):
        scheme = "https" if secure else "http"
        advertisement = Advertisement(service_info(options.host, port, scheme, console.fingerprint))
    server = ConsoleServer(console, sock, (certificate.cert, certificate.key) if certificate else None,
                           advertisement).start()
    log.info("console on %s (state in %s)", server.url, state.root)
    if certificate:
        log.info("console certificate SHA-256 fingerprint %s", certificate.fingerprint)
    if password_file:
        print(f"racer console: a first password was generated and written to {password_file} (readable by "
              f"this user only); log in with it, then change it with racer passwd --state-dir {state.root}",
              file=sys.stderr, flush=True)
    return server
