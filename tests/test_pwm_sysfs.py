"""The stock DeepRacer PWM sysfs driver against a sysfs model that enforces the kernel's rules."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest

from calibration.servo import FACTORY_DEFAULT, save
from calibrations import SAVED
from car.actuators.base import ActuatorFault
from car.actuators.pwm_sysfs import KernelFiles, PwmSysfsDriver, find_chip
from hw.fds import run_python
from hw.sysfs import ModelAttribute, PwmSysfsModel

MOTOR_MID, SERVO_MID = FACTORY_DEFAULT.motor.mid, FACTORY_DEFAULT.servo.mid


@pytest.fixture
def sysfs(tmp_path: Path):
    """The model; every test must leave exported channels at neutral with the outputs disabled."""
    model = PwmSysfsModel(tmp_path / "sys")
    yield model
    for channel, mid in ((0, MOTOR_MID), (1, SERVO_MID)):
        if model.channel(channel).exists():
            assert model.attribute(channel, "duty_cycle") == mid
            assert model.attribute(channel, "enable") == 0
    assert not model.outputs_enabled()


def open_driver(model: PwmSysfsModel, **kwargs) -> PwmSysfsDriver:
    return PwmSysfsDriver(FACTORY_DEFAULT, model.pwm_dir, files=kwargs.pop("files", model), **kwargs)


def test_open_configures_both_channels_before_enabling_the_outputs(sysfs: PwmSysfsModel) -> None:
    driver = open_driver(sysfs)
    chip = "class/pwm/pwmchip1"
    assert sysfs.writes == [
        ("class/gpio/export", "436"),
        ("class/gpio/gpio436/direction", "high"),
        (f"{chip}/export", "0"),
        (f"{chip}/pwm0/period", "20000000"),
        (f"{chip}/export", "1"),
        (f"{chip}/pwm1/period", "20000000"),
        (f"{chip}/pwm0/duty_cycle", str(MOTOR_MID)),
        (f"{chip}/pwm1/duty_cycle", str(SERVO_MID)),
        (f"{chip}/pwm0/enable", "1"),
        (f"{chip}/pwm1/enable", "1"),
        ("class/gpio/gpio436/value", "0"),
    ]
    assert sysfs.outputs_enabled()
    driver.close()


@pytest.mark.parametrize(("steering", "throttle", "servo_ns", "motor_ns"), [
    (1.0, 0.0, 1_700_000, MOTOR_MID),
    (-1.0, 0.0, 1_200_000, MOTOR_MID),
    (0.0, 1.0, SERVO_MID, 1_311_000),
    (0.0, -1.0, SERVO_MID, 1_603_500),
])
def test_commands_become_duty_cycles_in_ns(sysfs: PwmSysfsModel, steering: float, throttle: float,
                                           servo_ns: int, motor_ns: int) -> None:
    driver = open_driver(sysfs)
    driver.set(steering, throttle)
    assert (sysfs.attribute(1, "duty_cycle"), sysfs.attribute(0, "duty_cycle")) == (servo_ns, motor_ns)
    assert sysfs.attribute(0, "period") == sysfs.attribute(1, "period") == 20_000_000
    driver.close()


def test_close_is_neutral_then_disabled_and_idempotent(sysfs: PwmSysfsModel) -> None:
    driver = open_driver(sysfs)
    driver.set(0.7, 0.3)
    before = len(sysfs.writes)
    driver.close()
    chip = "class/pwm/pwmchip1"
    assert sysfs.writes[before:] == [
        (f"{chip}/pwm0/duty_cycle", str(MOTOR_MID)),
        (f"{chip}/pwm1/duty_cycle", str(SERVO_MID)),
        ("class/gpio/gpio436/value", "1"),
        (f"{chip}/pwm0/enable", "0"),
        (f"{chip}/pwm1/enable", "0"),
    ]
    driver.close()
    assert len(sysfs.writes) == before + 5
    with pytest.raises(ActuatorFault, match=r"pwm-sysfs:.*: closed$"):
        driver.set(0.0, 0.0)


def test_out_of_range_command_is_rejected_before_any_write(sysfs: PwmSysfsModel) -> None:
    driver = open_driver(sysfs)
    before = list(sysfs.writes)
    with pytest.raises(ValueError, match=r"command 1\.5 is outside \[-1, 1\]"):
        driver.set(1.5, 0.0)
    assert sysfs.writes == before
    driver.close()


def test_the_chip_is_the_one_linked_to_the_pci_pwm_device(sysfs: PwmSysfsModel) -> None:
    assert find_chip(sysfs.pwm_dir) == sysfs.pwm_dir / "pwmchip1"
    assert find_chip(sysfs.chip) == sysfs.chip


def test_a_chip_dir_can_be_given_directly(sysfs: PwmSysfsModel) -> None:
    driver = PwmSysfsDriver(FACTORY_DEFAULT, sysfs.chip, files=sysfs)
    assert driver.gpio_dir == sysfs.gpio_dir
    assert sysfs.outputs_enabled()
    driver.close()


def test_missing_controller_is_an_actuator_fault(tmp_path: Path) -> None:
    (tmp_path / "pwm").mkdir()
    with pytest.raises(ActuatorFault, match=r"no pwmchip under .*/pwm belongs to PCI device 0000:00:17\.0"):
        PwmSysfsDriver(FACTORY_DEFAULT, tmp_path / "pwm")


def test_channels_left_exported_by_servo_pkg_are_reused(sysfs: PwmSysfsModel) -> None:
    for channel in (0, 1):
        sysfs.write(sysfs.chip / "export", str(channel))
        sysfs.write(sysfs.channel(channel) / "period", "30000000")
        sysfs.write(sysfs.channel(channel) / "duty_cycle", "25000000")
    sysfs.write(sysfs.gpio_dir / "export", "436")
    driver = open_driver(sysfs)
    assert sysfs.attribute(0, "duty_cycle") == MOTOR_MID
    assert sysfs.attribute(1, "period") == 20_000_000
    driver.close()


def test_a_channel_unexported_under_the_driver_faults_then_recovers(sysfs: PwmSysfsModel) -> None:
    driver = open_driver(sysfs)
    sysfs.write(sysfs.chip / "unexport", "1")
    with pytest.raises(ActuatorFault, match=r"No such device.*pwm1/duty_cycle"):  # kernfs: ENODEV
        driver.set(0.5, 0.0)
    driver.set(0.5, 0.0)
    assert sysfs.attribute(1, "duty_cycle") == 1_575_000
    assert sysfs.outputs_enabled()
    driver.close()


class CloseMidWrite:
    """File ops that run driver.close() between two pulse writes, as a signal handler would."""

    def __init__(self, model: PwmSysfsModel) -> None:
        self.model = model
        self.driver: PwmSysfsDriver | None = None

    def read(self, path: Path) -> str:
        return self.model.read(path)

    def write(self, path: Path, value: str) -> None:
        self.model.write(path, value)

    def open(self, path: Path) -> ModelAttribute:
        attribute = self.model.open(path)
        store = attribute.write

        def write(value: str) -> None:
            if self.driver is not None and path.name == "duty_cycle" and value == "1700000":
                driver, self.driver = self.driver, None
                driver.close()
            store(value)

        attribute.write = write  # type: ignore[method-assign]
        return attribute


def test_close_inside_a_set_still_ends_at_neutral_and_off(sysfs: PwmSysfsModel) -> None:
    files = CloseMidWrite(sysfs)
    driver = open_driver(sysfs, files=files)
    files.driver = driver
    driver.set(1.0, 0.5)
    assert sysfs.attribute(1, "duty_cycle") == SERVO_MID


def test_close_from_a_real_signal_handler_during_a_drive_loop(sysfs: PwmSysfsModel) -> None:
    driver = open_driver(sysfs)
    previous = signal.signal(signal.SIGALRM, lambda *_: driver.close())
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        deadline = time.monotonic() + 5
        with pytest.raises(ActuatorFault, match="closed"):
            while time.monotonic() < deadline:
                driver.set(1.0, -0.2)
                driver.set(-1.0, 0.2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_saved_calibration_is_the_first_duty_written_and_enable_comes_after(tmp_path: Path) -> None:
    model = PwmSysfsModel(tmp_path / "sys")
    driver = PwmSysfsDriver(SAVED, model.pwm_dir, files=model)
    chip = "class/pwm/pwmchip1"
    assert model.writes[-5:] == [
        (f"{chip}/pwm0/duty_cycle", "1500000"),
        (f"{chip}/pwm1/duty_cycle", "1480000"),
        (f"{chip}/pwm0/enable", "1"),
        (f"{chip}/pwm1/enable", "1"),
        ("class/gpio/gpio436/value", "0"),
    ]
    assert [w for w in model.writes if w[0].endswith("duty_cycle")] == model.writes[-5:-3]
    driver.set(0.0, 1.0)  # polarity -1: full forward is the saved min
    assert model.attribute(0, "duty_cycle") == 1_350_000
    driver.close()
    assert (model.attribute(0, "duty_cycle"), model.attribute(1, "duty_cycle")) == (1_500_000, 1_480_000)


def open_fds_under(root: Path) -> list[str]:
    """This process's descriptors open on files below root."""
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    return [t for t in targets if t.startswith(str(root))]


@pytest.mark.parametrize("kind", ["model", "kernel"])
def test_attributes_stay_open_while_connected_and_are_closed_by_close(tmp_path: Path, kind: str) -> None:
    model = PwmSysfsModel(tmp_path / "sys")
    model.export_outputs()
    driver = PwmSysfsDriver(FACTORY_DEFAULT, model.pwm_dir, files=model if kind == "model" else KernelFiles())
    held = open_fds_under(tmp_path)
    assert {Path(t).name for t in held} >= {"duty_cycle", "enable", "value"}
    for _ in range(20):
        driver.set(0.3, 0.1)
    assert open_fds_under(tmp_path) == held  # no open per pulse
    driver.close()
    assert open_fds_under(tmp_path) == []


def test_kernel_attribute_writes_each_value_whole_at_offset_zero(tmp_path: Path) -> None:
    path = tmp_path / "duty_cycle"
    path.write_text("0\n")
    attribute = KernelFiles().open(path)
    for value in ("1450000", "1575000", "1200000"):
        attribute.write(value)
        assert path.read_text().strip() == value
    path.unlink()
    attribute.close()
    attribute.close()
    with pytest.raises(FileNotFoundError, match="missing"):
        KernelFiles().write(tmp_path / "missing", "1")


EMFILE_SCRIPT = """
import json, sys
from pathlib import Path
from calibration import servo
from car.actuators.pwm_sysfs import KernelFiles, PwmSysfsDriver
from hw.fds import no_free_fds
from hw.sysfs import PwmSysfsModel

model = PwmSysfsModel(Path(sys.argv[1]))
model.export_outputs()
driver = PwmSysfsDriver(servo.load(sys.argv[2]), model.pwm_dir,
                        files=model if sys.argv[3] == "model" else KernelFiles())

def outputs():
    return [model.attribute(0, "duty_cycle"), model.attribute(1, "duty_cycle"), model.attribute(0, "enable"),
            model.attribute(1, "enable"), model.read(model.gpio(436) / "value")]

report = {}
for name, action in (("driving", lambda: driver.set(0.5, 0.8)), ("neutral", driver.neutral), ("closed", driver.close)):
    with no_free_fds():
        action()
    report[name] = outputs()
print(json.dumps(report))
"""


@pytest.mark.parametrize("kind", ["model", "kernel"])
def test_pulses_and_neutral_still_reach_the_outputs_when_the_process_has_no_fd_left(tmp_path: Path,
                                                                                      kind: str) -> None:
    saved = tmp_path / "calibration.json"
    save(SAVED, saved)
    result = run_python(EMFILE_SCRIPT, str(tmp_path / "sys"), str(saved), kind)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    driving = [SAVED.motor.pulse_ns(0.8), SAVED.servo.pulse_ns(0.5)]
    assert report["driving"] == [*driving, 1, 1, "0"]
    assert report["neutral"] == [1_500_000, 1_480_000, 1, 1, "0"]
    assert report["closed"] == [1_500_000, 1_480_000, 0, 0, "1"]


@pytest.mark.parametrize(("path", "value", "code"), [
    ("pwm0/period", "20000000", errno.ENOENT),
    ("export", "4", errno.ENODEV),
    ("export", "zero", errno.EINVAL),
    ("npwm", "8", errno.EACCES),
])
def test_model_rejects_what_the_kernel_rejects_before_export(sysfs: PwmSysfsModel, path: str, value: str,
                                                             code: int) -> None:
    with pytest.raises(OSError) as caught:
        sysfs.write(sysfs.chip / path, value)
    assert caught.value.errno == code


def test_model_enforces_pwm_state_rules_after_export(sysfs: PwmSysfsModel) -> None:
    sysfs.write(sysfs.chip / "export", "0")
    pwm = sysfs.channel(0)
    cases = [(pwm / "duty_cycle", "1000", errno.EINVAL), (pwm / "enable", "1", errno.EINVAL),
             (sysfs.chip / "export", "0", errno.EBUSY)]
    for path, value, code in cases:
        with pytest.raises(OSError) as caught:
            sysfs.write(path, value)
        assert caught.value.errno == code, path
    sysfs.write(pwm / "period", "20000000")
    for path, value in ((pwm / "duty_cycle", "20000001"), (pwm / "enable", "2"), (pwm / "period", "-1"),
                        (pwm / "polarity", "upside-down")):
        with pytest.raises(OSError) as caught:
            sysfs.write(path, value)
        assert caught.value.errno == errno.EINVAL, path
    sysfs.write(pwm / "duty_cycle", "1500000\n")
    with pytest.raises(OSError) as caught:
        sysfs.write(pwm / "period", "1000000")
    assert caught.value.errno == errno.EINVAL
    sysfs.write(sysfs.chip / "unexport", "0")
    assert not pwm.exists()


def test_model_gpio_rules(sysfs: PwmSysfsModel) -> None:
    sysfs.write(sysfs.gpio_dir / "export", "436")
    line = sysfs.gpio(436)
    with pytest.raises(OSError) as caught:
        sysfs.write(line / "value", "0")
    assert caught.value.errno == errno.EPERM
    with pytest.raises(OSError) as caught:
        sysfs.write(line / "direction", "sideways")
    assert caught.value.errno == errno.EINVAL
    sysfs.write(line / "direction", "out")
    assert sysfs.outputs_enabled()
    sysfs.write(line / "value", "1")
    assert not sysfs.outputs_enabled()
