"""A car process ends with the one that started it: the supervisor's nodes, the isolated actuator.

The parent names itself in the child's environment (`PARENT_ENV`); the child asks Linux for SIGTERM
when that parent dies, so its own signal handler brings the outputs to neutral and no node outlives
the graph that owns the car.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping

PARENT_ENV = "RACER_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent(env: Mapping[str, str] = os.environ) -> None:
    """On Linux, in a process whose parent set PARENT_ENV in `env`: SIGTERM when that parent dies (at once
    if it already has). Elsewhere, or without PARENT_ENV, nothing."""
    parent = env.get(PARENT_ENV)
    if not parent or sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
