"""A full disk under the console: uploads and saves that run out of space while the car drives.

The car (`racer car --sim --console`, one process) runs under a file-size limit (RLIMIT_FSIZE, set
in the child: a write past it fails with EFBIG as a write to a full disk fails with ENOSPC, and
needs no root or mount). An upload whose archive is larger than the limit, and one whose archive is
small but unpacks past it, must each get a 507 with a reason, leave nothing of themselves in the
state dir, and leave the car driving its model. A calibration save that cannot be written must
leave the car on the calibration it had (the file and the actuator agree).
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from browser.harness import STRAIGHT, racer_bundle
from dds_support import driving_model, free_port, wait_for
from model_factory import write_tar
from racer.laptop.client import CarAddress, CarClient, KnownCars

pytestmark = pytest.mark.timeout(300)
PASSWORD = "full-disk-pass-phrase"
LIMIT = 3 << 20  # bytes any one file of the car's may reach


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.fixture(scope="module")
def car(tmp_path_factory):
    work = tmp_path_factory.mktemp("full_disk")
    state = work / "state"
    subprocess.run([sys.executable, "-m", "racer.cli", "passwd", "--state-dir", str(state)], input=f"{PASSWORD}\n",
                   text=True, check=True, capture_output=True)
    url = f"http://127.0.0.1:{free_port()}"
    log = work / "racer.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--model",
                                 str(driving_model()), "--console", url.removeprefix("http://"), "--state-dir",
                                 str(state)], stdout=out, stderr=subprocess.STDOUT, preexec_fn=limited)
    client = CarClient(CarAddress.parse(url), lambda: PASSWORD, lambda _: None, KnownCars(work / "cars.json"))
    try:
        wait_for(lambda: proc.poll() is not None or _answers(client), 120, "the console")
        assert proc.poll() is None, log.read_text()[-3000:]
        client.request("POST", "/api/drive_mode", {"drive_mode": "auto"})
        client.request("POST", "/api/start_stop", {"start_stop": "start"})
        wait_for(lambda: _progress(client) > 0.5, 60, "the car driving")
        yield client, state, work
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _answers(client: CarClient) -> bool:
    try:
        return client.request("GET", "/api/status").body.get("mode") is not None
    except Exception:
        return False


def _progress(client: CarClient) -> float:
    simulator = client.request("GET", "/api/status").body["simulator"]
    return simulator["progress"] + 100.0 * simulator["laps"] if simulator else -1.0


def _leftovers(state: Path) -> list[str]:
    return sorted(p.relative_to(state).as_posix() for p in [*state.joinpath("uploads").iterdir(), *state.rglob(".*")])


def _still_driving(client: CarClient, model: str) -> None:
    status = client.request("GET", "/api/status").body
    assert status["model"] == model and status["running"], status
    before = _progress(client)
    wait_for(lambda: _progress(client) > before + 0.2, 30, "the car still driving")


@pytest.mark.parametrize("padding", ["random", "zeros"])
def test_an_upload_that_fills_the_disk_gets_507_and_leaves_nothing(car, padding, tmp_path):
    """random: the archive itself is past the limit (the body cannot be stored); zeros: a small archive
    that unpacks past it (the install cannot finish)."""
    client, state, work = car
    model = client.request("GET", "/api/status").body["model"]
    bundle = racer_bundle(tmp_path / "models", "big", STRAIGHT)
    files = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    files["padding.bin"] = os.urandom(LIMIT + (1 << 20)) if padding == "random" else bytes(LIMIT + (1 << 20))
    archive = write_tar(tmp_path / f"big_{padding}.tar.gz", files)
    models_before = sorted(p.name for p in state.joinpath("models").iterdir())
    answer = client.upload(archive, lambda sent, total: None)
    assert answer.status == 507, answer.body
    assert answer.body["success"] is False and "disk" in answer.body["reason"], answer.body
    assert sorted(p.name for p in state.joinpath("models").iterdir()) == models_before
    assert _leftovers(state) == []
    _still_driving(client, model)


def test_a_calibration_save_that_fails_leaves_the_car_on_its_calibration(tmp_path, monkeypatch):
    """In process (the save's own write fails with ENOSPC): a 507, and control still hands the actuator
    the calibration in the file, not the one the console could not keep."""
    from browser.harness import start_car
    from car import atomicfile
    from car.actuators.calibration import to_dict

    car = start_car(tmp_path, racer_bundle(tmp_path / "models", "driving", STRAIGHT))
    try:
        console = car.server.console.service
        before = console.calibration.get("angle")
        calibration_path = console.calibration.path
        on_disk = calibration_path.read_bytes() if calibration_path.exists() else None
        client = car.client()
        assert client.request("POST", "/api/set_calibration_mode").status == 200

        def full(path, data):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(atomicfile, "_write_synced", full)
        answer = client.request("POST", "/api/set_calibration/angle",
                                    {"min": before["min"] - 5, "mid": before["mid"] + 3, "max": before["max"] + 5,
                                     "polarity": before["polarity"]})
        assert answer.status == 507 and "No space left" in answer.body["reason"], answer.body
        assert console.calibration.get("angle") == before
        assert (calibration_path.read_bytes() if calibration_path.exists() else None) == on_disk
        applied = car.local.graph.control.core.calibration
        assert applied is None or applied == to_dict(console.calibration.saved)
        assert not list(calibration_path.parent.glob(".calibration*"))
    finally:
        car.stop()
