"""One calibration resolution for the whole car: the state dir's file, else --calibration, else the
stock DeepRacer file, else factory; applied from the first pulse in every command that drives."""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibrations import OTHER, SAVED
from car.actuators import calibration as servo
from car.actuators.calibration import FACTORY_DEFAULT, CalibrationError
from car.actuators.pwm_sysfs import PwmSysfsDriver
from car.calibration import resolve
from car.graph.multiprocess import open_driver
from hw.maestro_emulator import MaestroEmulator
from hw.sysfs import PwmSysfsModel
from racer.cli import build_parser, main
from racer.commands.node import config_from_args
from racer.processes.graph import graph_specs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stock DeepRacer path, moved into the test's folder (absent until a test writes it)."""
    path = tmp_path / "opt" / "calibration.json"
    path.parent.mkdir()
    monkeypatch.setattr("car.calibration.DEFAULT_PATH", path)
    return path


def saved_state_dir(root: Path, calibration: servo.Calibration = SAVED) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    servo.save(calibration, root / "calibration.json")
    return root


def test_the_state_dir_file_wins_over_every_other(tmp_path: Path, stock: Path) -> None:
    state = saved_state_dir(tmp_path / "state")
    servo.save(OTHER, tmp_path / "explicit.json")
    servo.save(OTHER, stock)
    car = resolve(tmp_path / "explicit.json", state)
    assert (car.calibration, car.source, car.state_file) == (SAVED, str(state / "calibration.json"),
                                                             state / "calibration.json")


def test_then_the_explicit_file_then_the_stock_file_then_factory(tmp_path: Path, stock: Path) -> None:
    state = tmp_path / "state"
    servo.save(OTHER, tmp_path / "explicit.json")
    servo.save(SAVED, stock)
    assert resolve(tmp_path / "explicit.json", state).calibration == OTHER
    assert resolve(None, state).calibration == SAVED
    assert resolve(None, state).source == str(stock)
    stock.unlink()
    factory = resolve("", state)
    assert (factory.calibration, factory.source) == (FACTORY_DEFAULT, "factory default")
    assert factory.state_file == state / "calibration.json"


def test_the_default_state_dir_is_used_when_none_is_given(tmp_path: Path, stock: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    saved_state_dir(tmp_path / "xdg" / "racer")
    car = resolve(None)
    assert car.calibration == SAVED and car.state_file == tmp_path / "xdg" / "racer" / "calibration.json"


def test_the_source_is_logged_once(tmp_path: Path, stock: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="car.calibration")
    resolve(None, saved_state_dir(tmp_path / "state"))
    assert [r.getMessage() for r in caplog.records] == [f"calibration: {tmp_path / 'state' / 'calibration.json'}"]


def test_a_corrupt_state_file_is_an_error_naming_it_never_a_fallback(tmp_path: Path, stock: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "calibration.json").write_text('{"Calibration": ')
    servo.save(OTHER, tmp_path / "explicit.json")
    with pytest.raises(CalibrationError, match=rf"^{state / 'calibration.json'}: not valid JSON"):
        resolve(tmp_path / "explicit.json", state)


def test_a_missing_explicit_file_is_an_error_not_factory(tmp_path: Path, stock: Path) -> None:
    with pytest.raises(CalibrationError, match=r"missing\.json: cannot read"):
        resolve(tmp_path / "missing.json", tmp_path / "state")


def pre_exported_tree(root: Path) -> PwmSysfsModel:
    model = PwmSysfsModel(root)
    model.export_outputs()
    return model


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_racer_car_with_a_corrupt_state_file_does_not_start_and_writes_nothing(tmp_path: Path, stock: Path,
                                                                                 capsys) -> None:
    model = pre_exported_tree(tmp_path / "sys")
    before = snapshot(model.root)
    state = tmp_path / "state"
    state.mkdir()
    (state / "calibration.json").write_text('{"Calibration": {"Servo": {}}}')
    code = main(["car", "--actuator", f"pwm-sysfs:{model.pwm_dir}", "--camera", f"images:{tmp_path}",
                 "--state-dir", str(state), "--calibration", str(tmp_path / "unused.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1] == f"racer car: {state / 'calibration.json'}: Calibration.Servo.min: missing"
    assert snapshot(model.root) == before


def node_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["node", "actuator", *argv])


def test_the_actuator_node_opens_with_the_state_dir_calibration(tmp_path: Path, stock: Path) -> None:
    model = pre_exported_tree(tmp_path / "sys")
    state = saved_state_dir(tmp_path / "state")
    spec = f"pwm-sysfs:{model.pwm_dir}"
    driver = open_driver(spec, None, config_from_args(node_args("--actuator", spec, "--state-dir", str(state))))
    try:
        assert isinstance(driver, PwmSysfsDriver) and driver.calibration == SAVED
        assert (model.attribute(0, "duty_cycle"), model.attribute(1, "duty_cycle")) == (1_500_000, 1_480_000)
        assert model.read(model.gpio(436) / "value") == "0"  # outputs on (active low)
        driver.set(0.0, 1.0)  # polarity -1: full forward is the saved min
        assert model.attribute(0, "duty_cycle") == 1_350_000
    finally:
        driver.close()


def test_racer_car_passes_its_state_dir_to_the_nodes_that_use_it(tmp_path: Path) -> None:
    """The actuator and control (whose services read and save the calibration) resolve the same calibration;
    the policy loads models from the state dir (the ros load services)."""
    stock = tmp_path / "stock.json"
    args = build_parser().parse_args(["car", "--transport", "dds", "--actuator", "maestro:/dev/ttyACM0",
                                      "--camera", "v4l2:/dev/video0", "--state-dir", str(tmp_path),
                                      "--calibration", str(stock)])
    specs = graph_specs(config_from_args(args, sim=args.sim))
    argv = {spec.name: spec.argv for spec in specs}
    for name in ("actuator", "control"):
        assert argv[name][-4:] == ["--calibration", str(stock), "--state-dir", str(tmp_path)]
        node = node_args(*argv[name][argv[name].index(name) + 1:])
        assert (node.state_dir, node.calibration) == (tmp_path, stock)
    assert argv["policy"][-2:] == ["--state-dir", str(tmp_path)]
    assert next(s for s in specs if s.name == "control").restart_argv[-4:] == argv["control"][-4:]
    assert "--state-dir" not in argv["camera"]
    without = build_parser().parse_args(["car", "--transport", "dds", "--actuator", "maestro:/dev/ttyACM0",
                                         "--camera", "v4l2:/dev/video0"])
    assert all("--state-dir" not in s.argv for s in graph_specs(config_from_args(without, sim=without.sim)))


def test_selftest_reads_the_state_dir(tmp_path: Path, stock: Path, capsys) -> None:
    state = saved_state_dir(tmp_path / "state")
    with MaestroEmulator(tmp_path / "ttyACM0") as maestro:
        code = main(["selftest", "--actuator", f"maestro:{maestro.link}", "--state-dir", str(state),
                     "--dwell", "0", "--json"])
        received = maestro.wait_for(2)
    assert code == 0
    assert f'"calibration": "{state / "calibration.json"}"' in capsys.readouterr().out
    assert received[:2] == [(0, 1_500_000 // 250), (1, 1_480_000 // 250)]


def recorder_graph(calibration: servo.Calibration):
    from car.clock import SimClock
    from car.graph.stack import CarGraph
    from car.policy.core import PolicyModel
    from car.policy.metadata import parse_metadata
    from car.policy.preprocess import PreprocessSpec
    from test_console_api import PulseRecorder

    driver = PulseRecorder(calibration)
    spec = PreprocessSpec(width=16, height=12, layout="NCHW", scale=1 / 255)
    meta = parse_metadata({"action_space": [{"steering_angle": 0, "speed": 1.0}]})
    model = PolicyModel(lambda x: np.ones(1, np.float32), spec, meta)
    return CarGraph(SimClock(), None, driver, model), driver


@pytest.mark.parametrize("state_saved", [True, False])
def test_the_console_wizard_starts_from_the_car_calibration_and_saves_to_the_state_dir(
        tmp_path: Path, stock: Path, state_saved: bool) -> None:
    from racer.processes.console import start_car_console

    state = saved_state_dir(tmp_path / "state") if state_saved else tmp_path / "state"
    servo.save(OTHER, tmp_path / "explicit.json")
    args = build_parser().parse_args(["car", "--console", "127.0.0.1:0", "--state-dir", str(state),
                                      "--calibration", str(tmp_path / "explicit.json")])
    config = config_from_args(args, sim=args.sim)
    car = resolve(args.calibration, args.state_dir)
    graph, driver = recorder_graph(car.calibration)
    for calibration in (car, None):  # given by `racer car`, or resolved by the console itself
        server = start_car_console(config, graph.bus, graph.clock, "tiny", calibration)
        try:
            wizard = server.console.service.calibration
            assert wizard.path == state / "calibration.json"
            assert wizard.saved == driver.calibration == (SAVED if state_saved else OTHER)
            assert set(driver.writes) == {(driver.calibration.motor.mid, driver.calibration.servo.mid)}
        finally:
            server.stop()


@pytest.fixture
def bundle_and_frames(tmp_path: Path) -> tuple[Path, Path]:
    import cv2

    from car.policy.bundle import save_bundle
    from car.policy.preprocess import DEEPRACER_SPEC
    from model_factory import metadata, ov_model

    bundle = tmp_path / "tiny"
    save_bundle(bundle, ov_model(), metadata(), DEEPRACER_SPEC).close()
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "000.png"), np.full((480, 640, 3), 60, np.uint8))
    return bundle, frames


@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", [("local", "--console", "127.0.0.1:0"), ("dds",)], ids=["local+console", "dds"])
def test_racer_car_sends_only_the_saved_calibration_from_the_first_pulse(
        tmp_path: Path, stock: Path, bundle_and_frames: tuple[Path, Path], transport: tuple[str, ...]) -> None:
    """Issue 9 case 5: the saved mids are the first targets, and the factory's never appear."""
    from dds_support import loopback_domain, wait_for

    bundle, frames = bundle_and_frames
    state = saved_state_dir(tmp_path / "state")
    neutral = [(0, 1_500_000 // 250), (1, 1_480_000 // 250)]
    with MaestroEmulator(tmp_path / "ttyACM0") as maestro, loopback_domain():
        proc = subprocess.Popen(
            [sys.executable, "-m", "racer.cli", "car", "--transport", *transport, "--actuator",
             f"maestro:{maestro.link}", "--camera", f"images:{frames}", "--model", str(bundle),
             "--state-dir", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            wait_for(lambda: len(maestro.targets) >= 2 or proc.poll() is not None, 120, "the Maestro opened")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        targets = list(maestro.targets)
    assert proc.returncode == 0, err
    assert f"calibration: {state / 'calibration.json'}" in err
    assert targets[:2] == neutral
    assert set(targets) <= {*neutral, (0, 0), (1, 0)}  # never the factory's 5784 / 5800
