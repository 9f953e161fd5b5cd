"""The terminal keyboard as `racer teleop`'s stick: keys from stdin, arrows as w/a/s/d, and the two axes
they move.

A terminal has no key-up, only the repeats of a held key: an axis keeps its value while its keys keep
coming (within KEY_HOLD_S, longer than a terminal's first repeat delay) and falls back to zero when
they stop, so a released key never leaves the car driving.
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import termios
import threading
import tty
from collections.abc import Iterator

TELEOP_STEP = 0.25
KEY_HOLD_S = 0.75  # above the usual first key-repeat delay (X11: 660 ms), so a held key never drops out
ARROWS = {"\x1b[A": "w", "\x1b[B": "s", "\x1b[C": "d", "\x1b[D": "a"}


def read_keys(into: queue.Queue[str]) -> None:
    """Keys from stdin (unbuffered on a terminal), arrows as w/a/s/d; end of input is q."""
    fd = sys.stdin.fileno()
    pending = ""
    while True:
        data = os.read(fd, 16)
        if not data:
            into.put("q")
            return
        pending += data.decode("utf-8", "replace")
        while pending:
            arrow = next((seq for seq in ARROWS if pending.startswith(seq)), None)
            if arrow:
                into.put(ARROWS[arrow])
                pending = pending[len(arrow):]
            elif pending.startswith("\x1b") and len(pending) < 3:
                break
            else:
                into.put(pending[0])
                pending = pending[1:]


@contextlib.contextmanager
def terminal_keys() -> Iterator[queue.Queue[str]]:
    """The terminal on stdin in cbreak mode (each key as it is pressed) while the block runs, its keys
    arriving in the queue from a reader thread; the terminal's settings restored after."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        keys: queue.Queue[str] = queue.Queue()
        threading.Thread(target=read_keys, args=(keys,), daemon=True).start()
        yield keys
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Axes:
    """Steering and throttle (-1..1, + = left / forward) from the keys w/s (throttle), a/d (steering) and
    space (both to zero), each key a TELEOP_STEP."""

    def __init__(self) -> None:
        self.steering = self.throttle = 0.0
        self._pressed = {"steering": -math.inf, "throttle": -math.inf}

    def key(self, key: str, now: float) -> None:
        if key == " ":
            self.steering = self.throttle = 0.0
            return
        axis = "throttle" if key in "ws" else "steering"
        value = getattr(self, axis) + (TELEOP_STEP if key in "wa" else -TELEOP_STEP)
        setattr(self, axis, max(-1.0, min(1.0, value)))
        self._pressed[axis] = now

    def expire(self, now: float) -> bool:
        """Zero the axes whose keys stopped; True when that changed something."""
        changed = False
        for axis, pressed in self._pressed.items():
            if getattr(self, axis) != 0.0 and now - pressed > KEY_HOLD_S:
                setattr(self, axis, 0.0)
                changed = True
        return changed
