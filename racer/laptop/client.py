"""The laptop's connection to a car's console: the transport the `racer` tools (and tests) talk to a car with.

Trust on first use: the first contact with a car over HTTPS fetches its self-signed certificate,
shows its fingerprint and pins it; afterwards the TLS handshake trusts only that certificate, so
a different car or a man in the middle fails before the password or token is sent. The tools log
in once with the password, exchange the session for a named API token, log the session out, and
keep the token with the pinned certificate in ~/.config/racer/cars.json (mode 0600), keyed by
scheme, host and port. Plain HTTP is refused to any car but one on this machine's loopback and
to a car pinned over HTTPS, so a token or password never crosses a network in the clear.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from websockets.sync.client import ClientConnection, connect

from car.console.state import write_private
from car.console.tls import fingerprint, is_loopback

DEFAULT_HTTPS_PORT = 443
DEFAULT_HTTP_PORT = 8080
CHUNK = 256 << 10
TIMEOUT_S = 30.0
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class ClientError(Exception):
    """What went wrong talking to a car, said for the person at the laptop."""


def config_dir() -> Path:
    """$RACER_CONFIG_DIR, else $XDG_CONFIG_HOME/racer, else ~/.config/racer."""
    if os.environ.get("RACER_CONFIG_DIR"):
        return Path(os.environ["RACER_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "racer"


@dataclass(frozen=True)
class CarAddress:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> CarAddress:
        """HOST, HOST:PORT, [IPv6]:PORT or a URL; without a scheme, https unless the host is loopback.
        ClientError for plain http:// to a host that is not loopback."""
        try:
            url = urlsplit(text if "://" in text else f"//{text}")
            hostname, explicit_port = url.hostname, url.port
        except ValueError:
            raise ClientError(f"--car {text!r}: expected HOST[:PORT] or https://HOST[:PORT]") from None
        if url.scheme not in ("", "http", "https") or not hostname:
            raise ClientError(f"--car {text!r}: expected HOST[:PORT] or https://HOST[:PORT]")
        scheme = url.scheme or ("http" if is_loopback(hostname) else "https")
        if scheme == "http" and not is_loopback(hostname):
            raise ClientError(f"--car {text!r}: plain HTTP would send the password and token in the clear; "
                              f"use https://{url.netloc} (cars off this machine serve HTTPS)")
        return cls(scheme, hostname, explicit_port or (DEFAULT_HTTPS_PORT if scheme == "https" else DEFAULT_HTTP_PORT))

    @property
    def key(self) -> str:
        """cars.json key: scheme://host:port, so nothing pinned or issued over HTTPS is used over HTTP."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class KnownCars:
    """cars.json: per scheme://HOST:PORT the pinned certificate (PEM) and the API token."""

    def __init__(self, path: Path | None = None):
        self.path = path or config_dir() / "cars.json"

    def read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read {self.path}: {exc}") from None

    def get(self, key: str) -> dict[str, str]:
        """The entry for `key`; an https key falls back to the entry an older version kept under
        HOST:PORT (only HTTPS pinned certificates), so an upgrade never silently re-pins."""
        cars = self.read()
        legacy = key.removeprefix("https://") if key.startswith("https://") else None
        return cars.get(key) or (cars.get(legacy, {}) if legacy else {})

    def pinned_over_https(self, host: str) -> bool:
        """Whether a certificate is pinned for `host` on any HTTPS port (older HOST:PORT entries too)."""
        return any(entry.get("certificate") and CarAddress.parse(key if "://" in key else f"https://{key}").host == host
                   for key, entry in self.read().items() if not key.startswith("http://"))

    def update(self, key: str, **values: str | None) -> None:
        cars = self.read()
        entry = {**cars.get(key, {}), **values}
        cars[key] = {k: v for k, v in entry.items() if v is not None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.path, json.dumps(cars, indent=1, sort_keys=True).encode())


def unreachable(address: CarAddress, exc: OSError, timeout_s: float = TIMEOUT_S) -> ClientError:
    """What failed on the way to the car, said plainly: unresolvable, refused, timed out, TLS, other."""
    where = address.netloc
    if isinstance(exc, socket.gaierror):
        return ClientError(f"cannot resolve {address.host!r}: {exc.strerror or exc} (check the name, or use the "
                           "car's address from racer discover)")
    if isinstance(exc, ConnectionRefusedError):
        return ClientError(f"{where} refused the connection: nothing listens on port {address.port} (is the car "
                           "running with --console on this port?)")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ClientError(f"{where} did not answer within {timeout_s:g} s (is the car on this network?)")
    if isinstance(exc, ssl.SSLError):
        return ClientError(f"TLS with {where} failed: {exc.reason or exc} (is it serving plain HTTP? "
                           f"try http:// only if it runs on this machine)")
    return ClientError(f"cannot reach {where}: {exc.strerror or exc}")


@dataclass
class Response:
    status: int
    body: dict[str, Any]

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or self.body.get("message") or f"HTTP {self.status}")


class CarClient:
    """One car's console; `password` is asked for only when there is no valid token yet."""

    def __init__(self, address: CarAddress, password: Callable[[], str], notice: Callable[[str], None],
                 known: KnownCars | None = None, expect_fingerprint: str | None = None,
                 token_name: str = "racer laptop tools"):
        self.address = address
        self.password = password
        self.notice = notice
        self.known = known or KnownCars()
        self.expect_fingerprint = expect_fingerprint
        self.token_name = token_name
        self._ssl: ssl.SSLContext | None = None
        self.timeout_s = TIMEOUT_S
        if address.scheme == "http" and self.known.pinned_over_https(address.host):
            raise ClientError(f"{address.host} was pinned over HTTPS; refusing plain HTTP to it "
                              f"(use https://{address.host}:PORT)")

    def _context(self) -> ssl.SSLContext | None:
        """TLS that trusts exactly the pinned certificate (pinning it on first contact)."""
        if self.address.scheme != "https":
            return None
        if self._ssl is not None:
            return self._ssl
        pinned = self.known.get(self.address.key).get("certificate")
        try:
            presented = ssl.get_server_certificate((self.address.host, self.address.port), timeout=self.timeout_s)
        except OSError as exc:
            raise unreachable(self.address, exc, self.timeout_s) from None
        seen = fingerprint(ssl.PEM_cert_to_DER_cert(presented))
        if pinned is not None:
            was = fingerprint(ssl.PEM_cert_to_DER_cert(pinned))
            if was != seen:
                raise ClientError(
                    f"{self.address.netloc} presents a different certificate than the one pinned on first use\n"
                    f"  pinned:    {was}\n  presented: {seen}\n"
                    f"If the car was reset on purpose, remove {self.address.key!r} from {self.known.path}.")
        else:
            if self.expect_fingerprint and self.expect_fingerprint.upper() != seen:
                raise ClientError(f"{self.address.netloc} presents certificate {seen}, not {self.expect_fingerprint}")
            self.known.update(self.address.key, certificate=presented)
            self.notice(f"first contact with {self.address.netloc}: pinned its certificate\n  SHA-256 {seen}\n"
                        "  compare it with the fingerprint the car printed at start")
            pinned = presented
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cadata=pinned)
        self._ssl = context
        return context

    def _connection(self) -> http.client.HTTPConnection:
        context = self._context()
        if context is not None:
            return http.client.HTTPSConnection(self.address.host, self.address.port, timeout=self.timeout_s,
                                               context=context)
        return http.client.HTTPConnection(self.address.host, self.address.port, timeout=self.timeout_s)

    def _exchange(self, method: str, path: str, body: bytes | Iterator[bytes] | None,
                  headers: dict[str, str]) -> tuple[int, bytes, http.client.HTTPMessage]:
        conn = self._connection()
        try:
            conn.putrequest(method, path)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            try:
                for chunk in ([body] if isinstance(body, bytes) else body or []):
                    conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the car answered early (a refusal); its answer follows
            response = conn.getresponse()
            return response.status, response.read(), response.headers
        except ssl.SSLCertVerificationError:
            raise ClientError(f"{self.address.netloc} no longer presents the pinned certificate") from None
        except OSError as exc:
            raise unreachable(self.address, exc, self.timeout_s) from None
        finally:
            conn.close()

    @staticmethod
    def _json(status: int, data: bytes) -> Response:
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            body = {"reason": data[:200].decode("utf-8", "replace")}
        return Response(status, body if isinstance(body, dict) else {"value": body})

    def _token(self) -> str:
        token = self.known.get(self.address.key).get("token")
        return token or self._new_token()

    def _new_token(self) -> str:
        """Log in with the password, trade the session for a named API token, log the session out.
        The car is reached first, so an unreachable car is not reported as a login problem."""
        status, data, _ = self._exchange("GET", "/api/server_ready", None, {"Accept": "application/json"})
        if status != 200:
            raise ClientError(f"{self.address.netloc} is not a ready racer console: {self._json(status, data).reason}")
        form = urlencode({"password": self.password()}).encode()
        status, data, headers = self._exchange("POST", "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(form)),
            "Accept": "application/json"})
        if status != 200:
            raise ClientError(f"login refused: {self._json(status, data).reason}")
        cookie = headers.get("set-cookie", "").split(";", 1)[0]
        status, page, _ = self._exchange("GET", "/", None, {"Cookie": cookie, "Accept": "text/html"})
        match = CSRF_META.search(page.decode("utf-8", "replace"))
        if status != 200 or not match:
            raise ClientError("the console page carries no CSRF token; is this a racer car?")
        body = json.dumps({"name": self.token_name}).encode()
        status, data, _ = self._exchange("POST", "/api/tokens", body, {
            "Cookie": cookie, "X-CSRFToken": match.group(1), "Content-Type": "application/json",
            "Content-Length": str(len(body))})
        answer = self._json(status, data)
        self._exchange("POST", "/logout", None, {"Cookie": cookie, "X-CSRFToken": match.group(1),
                                                 "Content-Length": "0"})
        if status != 200:
            raise ClientError(f"cannot create an API token: {answer.reason}")
        self.known.update(self.address.key, token=answer.body["token"])
        return answer.body["token"]

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Response:
        """A JSON API call with the token; a revoked token is replaced once."""
        body = json.dumps(payload).encode() if payload is not None else None
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
            if body is not None:
                headers.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
            status, data, _ = self._exchange(method, path, body, headers)
            if status == 401 and attempt == 0:
                self.known.update(self.address.key, token=None)
                continue
            return self._json(status, data)
        raise AssertionError("unreachable")

    def upload(self, archive: Path, progress: Callable[[int, int], None]) -> Response:
        """POST /api/uploadModels as multipart `file`, streamed from disk; returns once installed."""
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{archive.name}\"\r\n"
                "Content-Type: application/gzip\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = archive.stat().st_size
        token = self._token()

        def chunks(fh: BinaryIO) -> Iterator[bytes]:
            yield head
            sent = 0
            while chunk := fh.read(CHUNK):
                sent += len(chunk)
                progress(sent, size)
                yield chunk
            yield tail

        with archive.open("rb") as fh:
            status, data, _ = self._exchange("POST", "/api/uploadModels", chunks(fh), {
                "Authorization": f"Bearer {token}", "Accept": "application/json",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail))})
        return self._json(status, data)

    def websocket(self, path: str) -> ClientConnection:
        scheme = "wss" if self.address.scheme == "https" else "ws"
        try:
            return connect(f"{scheme}://{self.address.netloc}{path}", ssl=self._context(), open_timeout=self.timeout_s,
                           additional_headers={"Authorization": f"Bearer {self._token()}"})
        except OSError as exc:
            raise unreachable(self.address, exc, self.timeout_s) from None
