"""Who may use the console: one password, browser sessions with CSRF tokens, API tokens for tools.

There is no default password: the first start generates one and writes it to a file only the
owner can read, or the owner sets one with `racer passwd`; a password must be long enough and not
a common one (zxcvbn's frequency lists). Only a salted scrypt hash is stored. Browser sessions
live in memory (a restart logs everyone out); API tokens for the laptop tools are made only from
a logged-in session, carry a name and an expiry, and are stored as SHA-256 digests, since they are
long random strings that a slow hash would not protect any better. Changing the password ends
every session and revokes every token. Failed logins slow down the client that made them, and
only that client, so an attacker cannot lock the owner out.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from zxcvbn import zxcvbn

from car.console.state import StateDir, write_private

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
# zxcvbn's score 3: "safely unguessable" (about 10^8 guesses); 0..2 are common or near-common passwords
MIN_PASSWORD_SCORE = 3
SESSION_IDLE_S = 12 * 3600.0
FREE_LOGIN_FAILURES = 5
LOGIN_BACKOFF_S = 10.0
MAX_LOGIN_BACKOFF_S = 600.0
LOGIN_FORGET_S = 3600.0
TRACKED_CLIENTS = 4096
TOKEN_LIFETIME_DAYS = 90
MAX_TOKEN_LIFETIME_DAYS = 365
PASSWORD_FILE_NAME = "first-password"
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


def check_password_policy(password: str) -> None:
    """Raise PasswordError unless `password` is 8..256 characters, has no outer whitespace and is
    not a common or easily guessed password (zxcvbn score >= MIN_PASSWORD_SCORE)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise PasswordError("the password must not start or end with whitespace")
    verdict = zxcvbn(password)
    if verdict["score"] < MIN_PASSWORD_SCORE:
        why = verdict["feedback"]["warning"] or "it is too easy to guess"
        raise PasswordError(f"the password is too easy to guess ({why.rstrip('.')}); "
                            "use a few unrelated words or a longer phrase")


def set_password(state: StateDir, password: str) -> None:
    """Store the hash of a new password (PasswordError unless it passes the policy) and revoke every
    API token made under the old one; a first-start password file is removed with it."""
    check_password_policy(password)
    state.create()
    # tokens first: a change cut between the two writes leaves the old password with no tokens,
    # never the new one with the old password's tokens
    write_private(state.tokens, json.dumps({"tokens": []}).encode())
    write_private(state.password, (hash_password(password) + "\n").encode())
    first_password_file(state).unlink(missing_ok=True)


def first_password_file(state: StateDir) -> Path:
    """Where the first start leaves its generated password (mode 0600, in the secrets folder)."""
    return state.secrets / PASSWORD_FILE_NAME


def ensure_password(state: StateDir) -> Path | None:
    """On the first start, generate and store a password and write it to `first_password_file`
    (owner-only): returns that file's path, to be printed instead of the password, so the
    password never reaches a log or the journal. None when a password is already set."""
    if state.password.is_file():
        return None
    password = generate_password()
    set_password(state, password)
    path = first_password_file(state)
    write_private(path, (password + "\n").encode())
    return path


class LoginRefused(Exception):
    def __init__(self, status: int, reason: str, retry_after: int = 0):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Failures:
    count: int
    last: float


class LoginLimiter:
    """Failed logins per client, with backoff: after `free` failures a client waits `backoff_s`,
    doubling with each further failure up to `max_backoff_s`; `forget_s` after its last failure,
    or at its first success, the client starts afresh.

    There is deliberately no limit over all clients: one would let an attacker lock the owner out.
    The login pool (two password checks at a time) bounds the CPU an attack from many addresses
    can take. At most `tracked` clients are remembered (the oldest forgotten first), so rotating
    source addresses cannot grow memory without bound.
    """

    def __init__(self, free: int = FREE_LOGIN_FAILURES, backoff_s: float = LOGIN_BACKOFF_S,
                 max_backoff_s: float = MAX_LOGIN_BACKOFF_S, forget_s: float = LOGIN_FORGET_S,
                 tracked: int = TRACKED_CLIENTS, clock: Callable[[], float] = time.monotonic):
        self.free = free
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.forget_s = forget_s
        self.tracked = tracked
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may try again; 0 when it may try now."""
        now = self.clock()
        record = self._failures.get(client)
        if record is None:
            return 0
        if now - record.last >= self.forget_s:
            del self._failures[client]
            return 0
        if record.count < self.free:
            return 0
        wait = min(self.max_backoff_s, self.backoff_s * 2 ** (record.count - self.free))
        return max(0, math.ceil(record.last + wait - now))

    def failed(self, client: str) -> None:
        record = self._failures.pop(client, None) or _Failures(0, 0.0)
        record.count, record.last = record.count + 1, self.clock()
        self._failures[client] = record
        while len(self._failures) > self.tracked:
            self._failures.popitem(last=False)

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


TOKEN_FIELDS = frozenset({"id", "name", "sha256", "created", "expires"})


def _parse_tokens(data: bytes) -> list[dict[str, str]]:
    """The stored tokens; an entry without an expiry (made by an older version) is dropped."""
    tokens = json.loads(data or b"{}").get("tokens", [])
    return [t for t in tokens if isinstance(t, dict) and TOKEN_FIELDS <= set(t)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _expired(token: dict[str, str], now: datetime) -> bool:
    try:
        return datetime.fromisoformat(token["expires"]) <= now
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class Credential:
    """What a request was let in with: ("session", session id) or ("token", token id)."""

    kind: str
    key: str


class Auth:
    """Sessions, CSRF tokens, API tokens and the login check; safe to call from any thread."""

    def __init__(self, state: StateDir, limiter: LoginLimiter | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = _now):
        self.state = state
        self.limiter = limiter or LoginLimiter(clock=clock)
        self.clock = clock
        self.wall = wall
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
            raise LoginRefused(429, f"too many failed logins from {client}; try again in {wait} s", wait)

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

    def _live_session(self, sid: str | None, touch: bool) -> Session | None:
        with self._lock:
            self._stored_hash()
            session = self._sessions.get(sid or "")
            if session is None:
                return None
            now = self.clock()
            if now - session.last_seen > SESSION_IDLE_S:
                del self._sessions[sid or ""]
                return None
            if touch:
                session.last_seen = now
            return session

    def session(self, sid: str | None) -> Session | None:
        """The live session `sid`, its idle time restarted; None when unknown, idle too long or
        ended by a password change."""
        return self._live_session(sid, touch=True)

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def token_id(self, token: str) -> str | None:
        """The id of `token` when it is a stored, unexpired API token, else None."""
        prefix, _, rest = token.partition("_")
        token_id = rest.partition("_")[0]
        if prefix != TOKEN_PREFIX or not token_id:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.wall()
        with self._lock:
            tokens = self._tokens.get() or []
        valid = any(t["id"] == token_id and hmac.compare_digest(t["sha256"], digest) and not _expired(t, now)
                    for t in tokens)
        return token_id if valid else None

    def token_valid(self, token: str) -> bool:
        return self.token_id(token) is not None

    def alive(self, credential: Credential) -> bool:
        """Whether `credential` still lets its holder in (without counting as activity): false after
        logout, revocation, expiry or a password change."""
        if credential.kind == "session":
            return self._live_session(credential.key, touch=False) is not None
        now = self.wall()
        with self._lock:
            self._stored_hash()
            tokens = self._tokens.get() or []
        return any(t["id"] == credential.key and not _expired(t, now) for t in tokens)

    def tokens(self) -> list[dict[str, str]]:
        """The stored tokens without their digests: id, name, created, expires (ISO 8601 UTC)."""
        with self._lock:
            return [{k: t[k] for k in ("id", "name", "created", "expires")} for t in self._tokens.get() or []]

    def create_token(self, name: str, days: int = TOKEN_LIFETIME_DAYS) -> tuple[str, str, str]:
        """(id, token, expires) for a token valid `days` days; the token itself is returned once and
        only its digest is kept."""
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.wall()
        expires = (now + timedelta(days=days)).isoformat(timespec="seconds")
        entry = {"id": token_id, "name": name[:80], "sha256": hashlib.sha256(token.encode()).hexdigest(),
                 "created": now.isoformat(timespec="seconds"), "expires": expires}
        with self._lock:
            kept = [t for t in self._tokens.get() or [] if not _expired(t, now)]
            self._write_tokens([*kept, entry])
        return token_id, token, expires

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
