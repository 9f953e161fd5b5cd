"""The command line's error paths as a new user meets them: each ends in one line that says what
to do, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from racer.cli import INSTALL_TRAINING, TRAINING_EXTRAS

# `racer` in a process where the training extras are not installed (as after `make demo`).
WITHOUT_EXTRAS = ("import sys; sys.modules.update({name: None for name in %r}); "
                  "from racer.cli import main; sys.exit(main(sys.argv[1:]))" % sorted(TRAINING_EXTRAS))


def racer(*argv: str, code: str = "import sys; from racer.cli import main; sys.exit(main(sys.argv[1:]))",
          timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["train", "--out", "{tmp}/run"],
    ["export", "{tmp}/policy.pt", "--out", "{tmp}/bundle"],
    ["eval", "--out", "{tmp}/gap"],
    ["augment", "preview", "--out", "{tmp}/grid.png"],
    ["bench", "--quick"],
])
def test_a_missing_training_extra_names_the_make_target(argv, tmp_path):
    proc = racer(*(arg.format(tmp=tmp_path) for arg in argv), code=WITHOUT_EXTRAS)
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith(f"racer {argv[0]}: needs the training extras (")
    assert f"run `{INSTALL_TRAINING}`" in line


def test_an_unrelated_missing_module_is_not_blamed_on_the_extras(tmp_path):
    code = "import sys; sys.modules['openvino'] = None; from racer.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = racer("model", "check", str(tmp_path), code=code)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr and INSTALL_TRAINING not in proc.stderr
