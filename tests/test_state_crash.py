"""Crash consistency of the console's state dir (racer.uptime.crash; `tools/crash_state.py` is the long run).

kill -9 at random moments in each state-changing operation, then the console's start-up recovery:
the state dir must be the old or the new state of each part, load, and hold no temporary file.
"""
from __future__ import annotations

import errno

import pytest

from car.console import auth
from car.console.state import StateDir
from racer.uptime.crash import OPERATIONS, PASSWORDS, WRITES_MODELS, Harness


def test_kill_9_during_each_state_change_leaves_a_valid_state_dir(tmp_path):
    """26 kills: 2 in each operation that runs the model sandbox (a second or two each), 4 in the others."""
    harness = Harness(tmp_path, seed=22)
    slow = tuple(op for op in OPERATIONS if op in WRITES_MODELS)
    harness.run(kills=2 * len(slow), operations=slow)
    rest = tuple(op for op in OPERATIONS if op not in slow)
    report = harness.run(kills=4 * len(rest), operations=rest)
    assert report.inconsistent == []
    assert all(report.kills[op] >= (2 if op in slow else 4) for op in OPERATIONS), report.kills
    # the kills landed before and after the operations' own writes, not only in their set-up
    assert report.outcomes["delete: new"] + report.outcomes["token_revoke: new"] > 0, report.outcomes


def test_a_password_change_cut_short_leaves_no_token_of_the_old_password(tmp_path, monkeypatch):
    """A change that stops after its first write (the disk full, or a kill between the two files)
    must not leave the new password with the old password's API tokens alive."""
    state = StateDir(tmp_path).create()
    auth.set_password(state, PASSWORDS[0])
    _, token, _ = auth.Auth(state).create_token("laptop")
    write = auth.write_private
    calls = []

    def full_after_one(path, data):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, data)

    monkeypatch.setattr(auth, "write_private", full_after_one)
    with pytest.raises(OSError):
        auth.set_password(state, PASSWORDS[1])
    stored = state.password.read_text()
    changed = auth.verify_password(PASSWORDS[1], stored)
    assert changed or auth.verify_password(PASSWORDS[0], stored)
    assert not (changed and auth.Auth(state).token_valid(token)), "the old password's token outlived its change"
