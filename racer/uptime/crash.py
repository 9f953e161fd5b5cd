"""Crash consistency of the car's state dir: kill -9 during each state-changing operation, restart, check.

Each operation runs the console's own code (`car.console`) in a child process started from a
forkserver (the imports are paid once, so a kill costs milliseconds); the harness sends it SIGKILL
at a random moment of the operation's measured duration (half of them in its last third, where
its renames and writes are), as the OOM killer or a crashed process would, then restarts the state dir
the way the console does at start-up
(`car.console.server.recover_state`) and checks what a user relies on:

- no temporary file or half-moved folder survives the start; no child of the killed process
  (the model sandbox) runs on;
- every installed model is the old or the new version file for file, and loads (OpenVINO compiles
  it with the cache the killed process may have been writing);
- the calibration is the old or the new document, never a mix, and it loads;
- the password is the old or the new one, and a changed password leaves no token of the old one;
- the API tokens are the old or the new set.

Operations: upload (a new model streamed and installed), install (a replacement swapped in), load
(sandbox check and compile), delete, calibration save, password change, token create and revoke.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from car.config import DEFAULT_MODEL
from car.console.state import StateDir

OPERATIONS = ("upload", "install", "load", "delete", "calibration", "password", "token_create", "token_revoke")
BUNDLE_FILES = ("model.xml", "model.bin", "model_metadata.json", "racer.json")
PASSWORDS = ("harness correct horse battery 1", "harness staple gun lantern 2")
KEEP, SWAP, FRESH, VICTIM = "keep", "swap", "fresh", "victim"
WRITES_MODELS = {"upload": FRESH, "install": SWAP, "load": SWAP}  # operation -> the folder (and cache) it writes
CHUNK = 64 << 10
ORPHAN_GRACE_S = 2.0  # a sandbox that was starting when its parent died ends within this
PRELOAD = ["car.console.server", "car.console.uploads", "car.console.auth", "calibration.servo",
           "car.policy.inference", "racer.uptime.crash"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_versions(work: Path, model: Path) -> dict[str, Path]:
    """Two versions of one bundle (A: the model's files; B: the same with its metadata re-serialised):
    a folder that mixes them has a metadata file of one and is told apart by its digests."""
    from car.policy.archive import write_tar_gz

    versions = {}
    for name, indent in (("A", None), ("B", 4)):
        folder = work / f"bundle-{name}"
        folder.mkdir()
        for file in BUNDLE_FILES:
            shutil.copy(model / file, folder / file)
        if indent is not None:
            meta = folder / "model_metadata.json"
            meta.write_text(json.dumps(json.loads(meta.read_text()), indent=indent) + "\n")
        versions[name] = write_tar_gz(work / f"{name}.tar.gz", {f: folder / f for f in BUNDLE_FILES})
        shutil.copytree(folder, work / f"unpacked-{name}")
    return versions


def _calibrations() -> tuple[Any, Any]:
    import dataclasses

    from calibration.servo import FACTORY_DEFAULT
    servo, motor = FACTORY_DEFAULT.servo, FACTORY_DEFAULT.motor
    other = dataclasses.replace(FACTORY_DEFAULT, servo=dataclasses.replace(servo, mid=servo.mid + 20_000),
                                motor=dataclasses.replace(motor, mid=motor.mid - 10_000))
    return FACTORY_DEFAULT, other


# --- the operations, run in the child the harness kills ------------------------------------------

def _store(state: StateDir):
    from car.console.models import ModelStore
    return ModelStore(state.models, state.cache)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    boundary = b"harness"
    yield (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + FRESH.encode()
           + b".tar.gz\"\r\nContent-Type: application/gzip\r\n\r\n")
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk
            await asyncio.sleep(0)
    yield b"\r\n--" + boundary + b"--\r\n"


def op_upload(state: StateDir, archive: Path) -> None:
    """POST /api/uploadModels: the body streamed into uploads/, then checked and installed as a new folder."""
    from car.console.uploads import UploadLimits, install_archive, receive_archive

    folder, path = asyncio.run(receive_archive("multipart/form-data; boundary=harness", None, _chunks(archive),
                                               state.uploads, UploadLimits(), lambda name: None))
    install_archive(path, folder, _store(state), state.uploads, UploadLimits(), lambda stage, pct: None)
    path.unlink()


def op_install(state: StateDir, archive: Path) -> None:
    """The install step of an upload that replaces an installed model (one atomic exchange)."""
    from car.console.uploads import UploadLimits, install_archive

    install_archive(archive, SWAP, _store(state), state.uploads, UploadLimits(), lambda stage, pct: None)
    archive.unlink()


def op_load(state: StateDir) -> None:
    """PUT /api/models/<folder>/<model>: the sandbox check, then the compile the policy node runs."""
    _store(state).compile(SWAP, "model").infer  # noqa: B018 (compiled is what a load needs)


def op_delete(state: StateDir) -> None:
    _store(state).delete([VICTIM])


def op_calibration(state: StateDir, index: int) -> None:
    from calibration.servo import save
    save(_calibrations()[index], state.calibration)


def op_password(state: StateDir, index: int) -> None:
    from car.console.auth import set_password
    set_password(state, PASSWORDS[index])


def op_token_create(state: StateDir) -> None:
    from car.console.auth import Auth
    Auth(state).create_token("harness")


def op_token_revoke(state: StateDir, token_id: str) -> None:
    from car.console.auth import Auth
    Auth(state).revoke_token(token_id)


# --- the harness -----------------------------------------------------------------------------------

@dataclass
class Expected:
    """What the state dir may hold: per model folder the allowed versions (None: absent), the
    allowed calibrations and passwords, and the allowed token-id sets."""

    models: dict[str, set[str | None]]
    calibration: set[int]
    password: set[int]
    tokens: list[frozenset[str]]
    password_tokens: dict[str, int] = field(default_factory=dict)  # token id -> password it was made under


@dataclass
class Report:
    kills: Counter = field(default_factory=Counter)
    finished: Counter = field(default_factory=Counter)  # the operation ended before its kill came
    outcomes: Counter = field(default_factory=Counter)  # "op: old" / "op: new" after a kill
    inconsistent: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"kills": sum(self.kills.values()), "kills_per_operation": dict(self.kills),
                "finished_before_kill": dict(self.finished), "outcomes": dict(sorted(self.outcomes.items())),
                "inconsistent_states": len(self.inconsistent), "defects": self.inconsistent[:50],
                "seconds": round(self.seconds, 1)}


class Harness:
    def __init__(self, work: Path, model: Path = DEFAULT_MODEL, seed: int = 0):
        self.work = work
        self.state = StateDir(work / "state").create()
        self.versions = _write_versions(work, model)
        self.unpacked = {name: _digests(work / f"unpacked-{name}") for name in self.versions}
        self.rng = random.Random(seed)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.durations: dict[str, float] = {}
        self.report = Report()
        self._verified: tuple[str, int | None] = ("", None)  # the password file last checked, and its password
        self._setup()

    def _setup(self) -> None:
        from calibration.servo import save
        from car.console.auth import set_password

        for folder in (KEEP, SWAP, VICTIM):
            self._place(folder, "A")
        save(_calibrations()[0], self.state.calibration)
        set_password(self.state, PASSWORDS[0])
        self.expected = Expected({KEEP: {"A"}, SWAP: {"A"}, VICTIM: {"A"}, FRESH: {None}}, {0}, {0}, [frozenset()])

    def _place(self, folder: str, version: str) -> None:
        """Set a model folder up without the operation under test (a copy, renamed in)."""
        staging = self.state.root / f".setup-{uuid.uuid4().hex}"
        shutil.copytree(self.work / f"unpacked-{version}", staging)
        shutil.rmtree(self.state.models / folder, ignore_errors=True)
        os.rename(staging, self.state.models / folder)

    def _prepare(self, op: str) -> tuple[Callable[..., None], tuple, Callable[[], None]]:
        """The operation's function and arguments, and what the expected state becomes if it completes."""
        e, state = self.expected, self.state
        if op == "upload":
            shutil.rmtree(state.models / FRESH, ignore_errors=True)  # an upload of a new name
            version = self.rng.choice("AB")
            e.models[FRESH] = {None}
            return op_upload, (state, self.versions[version]), lambda: e.models.update({FRESH: {None, version}})
        if op == "install":
            (old,) = e.models[SWAP]
            new = "B" if old == "A" else "A"
            archive = state.uploads / f"upload-{uuid.uuid4().hex}.tar.gz"
            shutil.copy(self.versions[new], archive)
            return op_install, (state, archive), lambda: e.models.update({SWAP: {old, new}})
        if op == "load":
            return op_load, (state,), lambda: None
        if op == "delete":
            if e.models[VICTIM] == {None}:
                self._place(VICTIM, "A")
                e.models[VICTIM] = {"A"}
            return op_delete, (state,), lambda: e.models.update({VICTIM: {"A", None}})
        if op == "calibration":
            (old,) = e.calibration
            return op_calibration, (state, 1 - old), lambda: setattr(e, "calibration", {old, 1 - old})
        if op == "password":
            (old,) = e.password
            return op_password, (state, 1 - old), lambda: setattr(e, "password", {old, 1 - old})
        before = e.tokens[0]
        if op == "token_create":
            return op_token_create, (state,), lambda: setattr(e, "tokens", [before, None])
        if not before:
            self._run(op_token_create, (state,))
            before = self._read_tokens()
            e.tokens = [before]
            e.password_tokens.update(dict.fromkeys(before, min(e.password)))
        victim = self.rng.choice(sorted(before))
        return op_token_revoke, (state, victim), lambda: setattr(e, "tokens", [before, before - {victim}])

    def _run(self, fn: Callable[..., None], args: tuple, kill_after: float | None = None) -> tuple[bool, float]:
        """Run `fn(*args)` in a forkserver child; SIGKILL it after `kill_after` s: (killed, seconds)."""
        child = self.context.Process(target=fn, args=args, daemon=True)
        start = time.monotonic()
        child.start()
        child.join(kill_after)
        killed = child.is_alive()
        if killed:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the two looks
                killed = False
            child.join()
        if not killed and child.exitcode != 0:
            raise RuntimeError(f"{fn.__name__} failed without a kill (exit {child.exitcode})")
        return killed, time.monotonic() - start

    def measure(self) -> None:
        """Each operation's duration once, uninterrupted (the window its kills are spread over), after
        a first child has started the forkserver (its imports would count as the first operation's)."""
        self._run(os.getpid, ())
        for op in OPERATIONS:
            fn, args, completes = self._prepare(op)
            _, self.durations[op] = self._run(fn, args)
            completes()
            self.check(op)

    def _subject(self, op: str) -> Any:
        """The part of the expected state that `op` changes (one value: the state is known between kills)."""
        e = self.expected
        return {"upload": e.models[FRESH], "install": e.models[SWAP], "delete": e.models[VICTIM],
                "calibration": e.calibration, "password": e.password, "load": None}.get(op, e.tokens[0])

    def _moment(self, op: str) -> float:
        """When to kill (s after the start): anywhere in the operation's measured duration, or, every
        other time, in its last third and a little past it, where the renames and the file writes are
        (the start of an upload or an install is mostly the model check)."""
        duration = self.durations[op]
        return self.rng.uniform(0.0, duration) if self.rng.random() < 0.5 else self.rng.uniform(0.67, 1.2) * duration

    def kill_once(self, op: str) -> None:
        fn, args, completes = self._prepare(op)
        before = self._subject(op)
        killed, _ = self._run(fn, args, self._moment(op))
        (self.report.kills if killed else self.report.finished)[op] += 1
        completes()
        errors = len(self.report.inconsistent)
        self.check(op)
        if killed:
            outcome = ("inconsistent" if len(self.report.inconsistent) > errors
                       else "old" if self._subject(op) == before else "new")
            self.report.outcomes[f"{op}: {outcome}"] += 1

    def run(self, kills: int, operations: tuple[str, ...] = OPERATIONS,
            progress: Callable[[Report], None] | None = None) -> Report:
        """Kill until every operation has had its share of `kills` (an operation that ends before
        its kill counts as finished, not killed); `progress` sees the report after each round."""
        started = time.monotonic()
        if not self.durations:
            self.measure()
        each = -(-kills // len(operations))
        while any(self.report.kills[op] < each for op in operations):
            for op in operations:
                if self.report.kills[op] < each:
                    self.kill_once(op)
            if progress is not None:
                progress(self.report)
        self.report.seconds = time.monotonic() - started
        return self.report

    # --- after a kill: restart, then check -----------------------------------------------------------

    def _read_tokens(self) -> frozenset[str]:
        from car.console.auth import _parse_tokens
        return frozenset(t["id"] for t in _parse_tokens(self.state.tokens.read_bytes()))

    def _fail(self, op: str, what: str) -> None:
        self.report.inconsistent.append(f"{op}: {what}")

    def check(self, op: str) -> None:
        """Restart (the console's start-up recovery), check every invariant, and narrow the expected
        state to what was found (the old or the new value of each part)."""
        from car.console.models import ModelStore
        from car.console.server import recover_state

        deadline = time.monotonic() + ORPHAN_GRACE_S
        while _sandboxes(self.state.root) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in _sandboxes(self.state.root):
            self._fail(op, f"sandbox pid {pid} of the killed process still runs {ORPHAN_GRACE_S:g} s later")
            os.kill(pid, signal.SIGKILL)
        recover_state(self.state, ModelStore(self.state.models, self.state.cache))
        for path in _temporary(self.state.root):
            self._fail(op, f"temporary file survived the start: {path.relative_to(self.state.root)}")
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for folder, allowed in self.expected.models.items():
            found = self._model_version(op, folder, load=folder == WRITES_MODELS.get(op))
            if found not in allowed:
                self._fail(op, f"model {folder}: found {found}, expected one of {sorted(map(str, allowed))}")
                found = sorted(allowed, key=str)[0]
                self._place(folder, found) if found else shutil.rmtree(self.state.models / folder, ignore_errors=True)
            self.expected.models[folder] = {found}
        self._check_calibration(op)
        self._check_secrets(op)

    def _model_version(self, op: str, folder: str, load: bool) -> str | None:
        """"A", "B", None (absent) or a description of a mix; with `load`, a whole version must load."""
        from car.policy.bundle import load_bundle
        from car.policy.inference import Policy

        path = self.state.models / folder
        if not path.exists():
            return None
        digests = _digests(path)
        found = next((name for name, files in self.unpacked.items() if files == digests), f"a mix {sorted(digests)}")
        if load and found in self.unpacked:
            try:
                Policy(load_bundle(path, self.state.cache / "ir"), self.state.cache / "compiled")
            except Exception as exc:  # any failure to load is the finding
                self._fail(op, f"model {folder} does not load: {type(exc).__name__}: {exc}")
        return found

    def _check_calibration(self, op: str) -> None:
        from calibration.servo import CalibrationError, load

        try:
            found = _calibrations().index(load(self.state.calibration))
        except (CalibrationError, ValueError) as exc:
            self._fail(op, f"calibration is neither the old nor the new one: {exc}")
            return
        if found not in self.expected.calibration:
            self._fail(op, f"calibration {found}, expected one of {sorted(self.expected.calibration)}")
        self.expected.calibration = {found}

    def _check_secrets(self, op: str) -> None:
        from car.console.auth import verify_password

        stored = self.state.password.read_text() if self.state.password.is_file() else ""
        if stored and stored == self._verified[0] and self._verified[1] in self.expected.password:
            found: int | None = self._verified[1]  # the same hash as last time: scrypt says the same
        else:
            found = next((i for i in sorted(self.expected.password) if verify_password(PASSWORDS[i], stored)), None)
            self._verified = (stored, found)
        if found is None:
            self._fail(op, "neither the old nor the new password works")
            found = sorted(self.expected.password)[0]
        try:
            tokens = self._read_tokens()
        except (OSError, ValueError) as exc:
            self._fail(op, f"tokens.json unreadable: {exc}")
            tokens = frozenset()
        stale = {t for t in tokens if self.expected.password_tokens.get(t, found) != found}
        if stale:
            self._fail(op, f"{len(stale)} token(s) made under the old password survived its change")
        allowed = self.expected.tokens
        if op == "token_create" and allowed[-1] is None:
            made = tokens - allowed[0]
            if tokens >= allowed[0] and len(made) <= 1:
                self.expected.password_tokens.update(dict.fromkeys(made, found))
            else:
                self._fail(op, f"tokens {sorted(tokens)} are neither {sorted(allowed[0])} nor one more")
        elif tokens not in allowed and not (op == "password" and not tokens):
            self._fail(op, f"tokens {sorted(tokens)}, expected one of {[sorted(t) for t in allowed]}")
        self.expected.password, self.expected.tokens = {found}, [tokens]


def _sandboxes(root: Path) -> list[int]:
    """Model sandboxes (python -m car.policy.sandbox) working on this state dir."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"car.policy.sandbox" in argv and any(str(root).encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def _temporary(root: Path) -> list[Path]:
    """What an atomic write or move leaves while it runs: a hidden name anywhere in the state dir,
    or an upload or staging file in uploads/."""
    return sorted({*root.rglob(".*"), *root.joinpath("uploads").iterdir()})
