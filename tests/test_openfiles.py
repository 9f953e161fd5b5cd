"""The open-file limit raised at start: up to the hard limit, at most TARGET, never lowered."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hw.fds import run_python

SCRIPT = """
import json, logging, resource, sys
from car.openfiles import raise_open_file_limit
logging.basicConfig(level=logging.INFO)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
returned = raise_open_file_limit()
print(json.dumps([returned, *resource.getrlimit(resource.RLIMIT_NOFILE)]))
"""


def needs_hard_limit(limit: int) -> None:
    """A process may lower its hard limit but not raise it (without privilege): skip where it is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"this machine's hard open-file limit {hard} is below {limit}")


@pytest.mark.parametrize(("soft", "hard", "after", "logged"), [
    (256, 1024, 1024, "open-file limit raised from 256 to 1024 (hard limit 1024)"),
    (256, 8192, 4096, "open-file limit raised from 256 to 4096 (hard limit 8192)"),
    (5000, 8192, 5000, None),  # left as it was: nothing to say at INFO (every node of a graph would say it)
    (512, 512, 512, None),
])
def test_the_soft_limit_goes_up_to_the_hard_one_bounded_by_4096(soft: int, hard: int, after: int,
                                                                 logged: str | None) -> None:
    needs_hard_limit(hard)
    result = run_python(SCRIPT, str(soft), str(hard))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [after, after, hard]
    assert result.stderr.strip().splitlines() == ([f"INFO:car.openfiles:{logged}"] if logged else [])


def test_racer_car_raises_it_before_starting(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    needs_hard_limit(1024)
    result = subprocess.run([sys.executable, "-m", "racer.cli", "car", "--actuator", f"pwm-sysfs:{tmp_path}",
                             "--camera", f"images:{tmp_path}", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, preexec_fn=low_limit,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode != 0  # nothing to drive here; the limit was raised first
    assert "open-file limit raised from 256 to 1024 (hard limit 1024)" in result.stderr
