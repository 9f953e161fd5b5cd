"""A process out of file descriptors, as a connection flood leaves it (every open() fails with EMFILE).

Only ever in a child process (run_python), so the test runner keeps its own limit and descriptors.
"""
from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def no_free_fds(limit: int = 64) -> Iterator[None]:
    """Lower the soft RLIMIT_NOFILE to `limit` and hold every descriptor left (on /dev/null) until
    the block ends; then release them and restore the limit. Asserts that open() really fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held = []
    try:
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def run_python(code: str, *argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that imports this repo and tests/ (hw.*, calibrations)."""
    path = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "PYTHONPATH": path})
