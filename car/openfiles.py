"""The process's open-file limit, raised at start where the hard limit allows.

Each connection to the console, camera frame file and model file takes a descriptor; a distro's
default soft limit (often 1024) lets a flood of idle connections exhaust it. The actuator keeps its
device handles open, so it does not need new ones, but the rest of the car should not fail first.
"""
from __future__ import annotations

import logging
import resource

TARGET = 4096

log = logging.getLogger(__name__)


def raise_open_file_limit(target: int = TARGET) -> int:
    """Raise the soft RLIMIT_NOFILE to min(target, hard limit), never lowering it; a raise is logged
    at INFO, a limit left as it was at DEBUG.

    Returns the soft limit now in force. Raising the soft limit up to the hard one needs no
    privilege, so this does not fail on a car where the hard limit is lower than `target`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        log.info("open-file limit raised from %d to %d (hard limit %s)", soft, wanted, _shown(hard))
        return wanted
    # not news: each node of `racer car --transport dds|ros` inherits the limit its parent raised
    log.debug("open-file limit %s (hard limit %s)", _shown(soft), _shown(hard))
    return soft


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
