"""Who may use the console: one password, browser sessions with CSRF tokens, API tokens for tools.

There is no default password: the first start generates one and shows it once, or the owner
sets one with `racer passwd`. Only a salted scrypt hash is stored. Browser sessions live in
memory (a restart logs everyone out); API tokens for the laptop tools are stored as SHA-256
digests, since they are long random strings that a slow hash would not protect any better.
Changing the password ends every session and revokes every token.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from car.console.state import StateDir, write_private

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
MIN_PASSWORD_LENGTH = 8
SESSION_IDLE_S = 12 * 3600.0
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 60.0
GLOBAL_LOGIN_FAILURES = 30
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
TOKEN_PREFIX = "racer"


class PasswordError(ValueError):
    """A password the console refuses to store; the message says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$digest`, parameters stored so they can be raised without a migration."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def generate_password() -> str:
    """Four groups of five unambiguous characters: about 99 bits, easy to read off a log."""
    groups = ("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(5)) for _ in range(4))
    return "-".join(groups)


def set_password(state: StateDir, password: str) -> None:
    """Store the hash of a new password and revoke every API token made under the old one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise PasswordError("the password must not start or end with whitespace")
    state.create()
    write_private(state.password, (hash_password(password) + "\n").encode())
    write_private(state.tokens, json.dumps({"tokens": []}).encode())


def ensure_password(state: StateDir) -> str | None:
    """On the first start, generate and store a password; return it so it can be shown once."""
    if state.password.is_file():
        return None
    password = generate_password()
    set_password(state, password)
    return password


class LoginRefused(Exception):
    def __init__(self, status: int, reason: str, retry_after: int = 0):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class LoginLimiter:
    """Failed logins per client and in total over a sliding window; past the limit, wait."""

    def __init__(self, per_client: int = LOGIN_FAILURES, total: int = GLOBAL_LOGIN_FAILURES,
                 window_s: float = LOGIN_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.per_client = per_client
        self.total = total
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may try now."""
        now = self.clock()
        mine = self._failures.get(client, deque())
        self._trim(mine, now)
        self._trim(self._all, now)
        waits = [times[0] + self.window_s - now for times, limit in ((mine, self.per_client), (self._all, self.total))
                 if len(times) >= limit]
        return int(max(waits) + 1) if waits else 0

    def failed(self, client: str) -> None:
        now = self.clock()
        self._failures.setdefault(client, deque()).append(now)
        self._all.append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


@dataclass
class Session:
    csrf: str
    last_seen: float


@dataclass
class _Watched:
    """A file re-read when it is replaced or modified (racer passwd runs beside the car)."""

    path: Path
    stamp: tuple[int, int] | None = None
    value: Any = None
    parse: Callable[[bytes], Any] = field(default=lambda data: data)

    def get(self) -> Any:
        try:
            info = self.path.stat()
            stamp = (info.st_ino, info.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp != self.stamp:
            self.value = self.parse(self.path.read_bytes()) if stamp is not None else None
            self.stamp = stamp
        return self.value


def _parse_tokens(data: bytes) -> list[dict[str, str]]:
    tokens = json.loads(data or b"{}").get("tokens", [])
    return [t for t in tokens if isinstance(t, dict) and {"id", "name", "sha256", "created"} <= set(t)]


class Auth:
    """Sessions, CSRF tokens, API tokens and the login check; safe to call from any thread."""

    def __init__(self, state: StateDir, limiter: LoginLimiter | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.state = state
        self.limiter = limiter or LoginLimiter(clock=clock)
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._password = _Watched(state.password, parse=lambda data: data.decode().strip())
        self._tokens = _Watched(state.tokens, parse=_parse_tokens)
        self._password_seen: str | None = None
        self._lock = threading.Lock()
        self._verify_lock = threading.Lock()

    def _stored_hash(self) -> str | None:
        stored = self._password.get()
        if stored != self._password_seen:
            self._sessions.clear()
            self._password_seen = stored
        return stored

    def check_login(self, client: str) -> None:
        """Raise LoginRefused(429) while `client` must wait; call before the slow hash."""
        with self._lock:
            wait = self.limiter.retry_after(client)
        if wait:
            raise LoginRefused(429, f"too many failed logins; try again in {wait} s", wait)

    def login(self, password: str, client: str) -> tuple[str, Session]:
        """A new session (id, session) for the right password, else LoginRefused.

        One password check at a time: parallel guesses queue behind each other, so the rate
        limit counts every one of them and the slow hash cannot be used to load the CPU.
        """
        with self._verify_lock:
            self.check_login(client)
            with self._lock:
                stored = self._stored_hash()
            if stored is None:
                raise LoginRefused(503, "no console password is set; run racer passwd on the car")
            correct = verify_password(password, stored)
            with self._lock:
                if not correct:
                    self.limiter.failed(client)
                    raise LoginRefused(401, "wrong password")
                self.limiter.succeeded(client)
                sid = secrets.token_urlsafe(32)
                session = Session(csrf=secrets.token_urlsafe(32), last_seen=self.clock())
                self._sessions[sid] = session
                return sid, session

    def session(self, sid: str | None) -> Session | None:
        with self._lock:
            self._stored_hash()
            session = self._sessions.get(sid or "")
            if session is None:
                return None
            now = self.clock()
            if now - session.last_seen > SESSION_IDLE_S:
                del self._sessions[sid]
                return None
            session.last_seen = now
            return session

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def token_valid(self, token: str) -> bool:
        prefix, _, rest = token.partition("_")
        token_id = rest.partition("_")[0]
        if prefix != TOKEN_PREFIX or not token_id:
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            tokens = self._tokens.get() or []
        return any(t["id"] == token_id and hmac.compare_digest(t["sha256"], digest) for t in tokens)

    def tokens(self) -> list[dict[str, str]]:
        """The stored tokens without their digests."""
        with self._lock:
            return [{k: t[k] for k in ("id", "name", "created")} for t in self._tokens.get() or []]

    def create_token(self, name: str) -> tuple[str, str]:
        """(id, token); the token itself is returned once and only its digest is kept."""
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        entry = {"id": token_id, "name": name[:80], "sha256": hashlib.sha256(token.encode()).hexdigest(),
                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with self._lock:
            self._write_tokens([*(self._tokens.get() or []), entry])
        return token_id, token

    def revoke_token(self, token_id: str) -> bool:
        with self._lock:
            tokens = self._tokens.get() or []
            kept = [t for t in tokens if t["id"] != token_id]
            if len(kept) == len(tokens):
                return False
            self._write_tokens(kept)
            return True

    def _write_tokens(self, tokens: list[dict[str, str]]) -> None:
        write_private(self.state.tokens, json.dumps({"tokens": tokens}, indent=1).encode())
