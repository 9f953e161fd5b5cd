"""Importing racer and converting an AWS model leave the machine alone: no usage report, no update
check, so no fork, no name lookup, no connection (car/usage_reports.py, sim2real/augment.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from model_factory import PPO_TAR, REPO

# Runs in a fresh interpreter: the telemetry singleton is process-wide. An audit hook records and
# refuses every way out of the process, so even the control run never reaches the network.
CONVERSION = """
import importlib, json, sys
from pathlib import Path
caught = []
WAYS_OUT = ("os.fork", "os.posix_spawn", "subprocess.Popen", "socket.getaddrinfo", "socket.connect")
def refuse(event, args):
    if event in WAYS_OUT:
        caught.append(event)
        raise PermissionError(event + " refused by the test")
sys.addaudithook(refuse)

importlib.import_module(sys.argv[1])
import openvino as ov
from car.policy.aws_graph import frozen_graph_io
from car.policy.metadata import load_metadata
from car.policy.preprocess import DEEPRACER_SPEC
root = Path(sys.argv[2])
pb = next(root.rglob("model.pb"))
io = frozen_graph_io(pb, load_metadata(next(root.rglob("model_metadata.json"))), DEEPRACER_SPEC)
model = ov.convert_model(str(pb), input=[(io.input, list(io.shape), ov.Type.f32)], output=io.output)
if sys.modules.get("openvino_telemetry"):
    from openvino_telemetry import Telemetry
    Telemetry().sender.executor.shutdown(wait=True)  # every report it queued has been tried
print(json.dumps({"caught": caught, "outputs": [list(o.shape) for o in model.outputs]}))
"""


def convert_in_fresh_process(first_import: str, tmp_path) -> dict:
    """Import `first_import`, then openvino, and convert the discrete PPO model, as a first-time user
    would: no consent file, not in CI."""
    with tarfile.open(PPO_TAR) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    switches = ("CI", "TF_BUILD", "JENKINS_URL", "NO_ALBUMENTATIONS_UPDATE")  # each turns a library's reporting off
    env = {k: v for k, v in os.environ.items() if k not in switches} | {"HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", CONVERSION, first_import, str(tmp_path / "model")], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("first_import, reports", [
    ("openvino", True), ("car", False), ("racer.cli", False), ("sim2real.export", False)])
def test_importing_openvino_and_converting_a_model_send_no_usage_report(first_import, reports, tmp_path):
    """The control (openvino imported on its own) tries to fork a reporter; after any racer package,
    nothing tries to leave the process and nothing is written to the home directory."""
    got = convert_in_fresh_process(first_import, tmp_path)
    assert got["outputs"] == [[1, 5]]
    if reports:
        assert "os.fork" in got["caught"]
    else:
        assert got["caught"] == []
        assert not (tmp_path / "home" / "intel").exists()
