"""`--actuator SPEC` strings: parsing, opening, and the car package's import boundary."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from car.actuators.base import ActuatorFault
from car.actuators.calibration import FACTORY_DEFAULT
from car.actuators.maestro import MaestroDriver
from car.actuators.open import ActuatorSpec, open_actuator, parse_actuator_spec
from car.actuators.pwm_sysfs import PwmSysfsDriver
from hw.maestro_emulator import MaestroEmulator
from hw.sysfs import PwmSysfsModel


@pytest.mark.parametrize(("spec", "parsed"), [
    ("pwm-sysfs", ActuatorSpec("pwm-sysfs")),
    ("pwm-sysfs:/sys/class/pwm/pwmchip0", ActuatorSpec("pwm-sysfs", path="/sys/class/pwm/pwmchip0")),
    ("pca9685:1:0x40", ActuatorSpec("pca9685", bus=1, address=0x40)),
    ("pca9685:0:65", ActuatorSpec("pca9685", bus=0, address=0x41)),
    ("maestro:/dev/ttyACM0", ActuatorSpec("maestro", path="/dev/ttyACM0")),
])
def test_valid_specs(spec: str, parsed: ActuatorSpec) -> None:
    assert parse_actuator_spec(spec) == parsed


@pytest.mark.parametrize(("spec", "message"), [
    ("sim", r"^actuator spec 'sim' is the simulator, which the caller provides; open_actuator drives hardware"),
    ("", r"^unknown actuator spec '': expected pwm-sysfs\[:CHIP_DIR\], pca9685:BUS:ADDR or maestro:PORT$"),
    ("servo:1", r"^unknown actuator spec 'servo:1'"),
    ("pwm-sysfs:", r"^actuator spec 'pwm-sysfs:': empty CHIP_DIR \(omit ':' for /sys/class/pwm\)$"),
    ("maestro", r"^actuator spec 'maestro': expected maestro:PORT, e\.g\. maestro:/dev/ttyACM0$"),
    ("maestro:", r"^actuator spec 'maestro:': expected maestro:PORT"),
    ("pca9685:1", r"^actuator spec 'pca9685:1': expected pca9685:BUS:ADDR, e\.g\. pca9685:1:0x40$"),
    ("pca9685:1:0x40:2", r"^actuator spec 'pca9685:1:0x40:2': expected pca9685:BUS:ADDR"),
    ("pca9685::0x40", r"^actuator spec 'pca9685::0x40': expected pca9685:BUS:ADDR"),
    ("pca9685:one:0x40", r"^actuator spec 'pca9685:one:0x40': I2C bus 'one' is not an integer$"),
    ("pca9685:1:forty", r"^actuator spec 'pca9685:1:forty': address 'forty' is not an integer$"),
    ("pca9685:-1:0x40", r"^actuator spec 'pca9685:-1:0x40': I2C bus -1 is negative$"),
    ("pca9685:1:0x20", r"^actuator spec 'pca9685:1:0x20': address 0x20 is outside the PCA9685's 0x40\.\.0x7f$"),
])
def test_malformed_specs_are_one_line_value_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_actuator(spec, FACTORY_DEFAULT)
    assert "\n" not in str(caught.value)


def test_opens_a_maestro(tmp_path: Path) -> None:
    with MaestroEmulator(tmp_path / "ttyACM0") as maestro:
        driver = open_actuator(f"maestro:{tmp_path / 'ttyACM0'}", FACTORY_DEFAULT)
        assert isinstance(driver, MaestroDriver)
        driver.close()
        assert maestro.wait_for(6)[-2:] == [(0, 0), (1, 0)]


def test_opens_pwm_sysfs_with_real_file_writes(tmp_path: Path) -> None:
    """Channels and GPIO already exported (as servo_pkg leaves them), so plain file writes suffice."""
    model = PwmSysfsModel(tmp_path)
    for channel in (0, 1):
        model.write(model.chip / "export", str(channel))
    model.write(model.gpio_dir / "export", "436")
    driver = open_actuator(f"pwm-sysfs:{model.pwm_dir}", FACTORY_DEFAULT)
    assert isinstance(driver, PwmSysfsDriver)
    driver.set(1.0, 0.0)
    output_enable = model.gpio(436) / "value"
    assert model.attribute(1, "duty_cycle") == 1_700_000
    assert model.read(output_enable) == "0"
    driver.close()
    assert model.attribute(1, "duty_cycle") == FACTORY_DEFAULT.servo.mid
    assert model.attribute(1, "enable") == 0
    assert model.read(output_enable) == "1"


def test_absent_hardware_is_an_actuator_fault(tmp_path: Path) -> None:
    with pytest.raises(ActuatorFault, match=r"pca9685:99:0x40: .*i2c-99"):
        open_actuator("pca9685:99:0x40", FACTORY_DEFAULT)
    with pytest.raises(ActuatorFault, match=r"no pwmchip under"):
        open_actuator(f"pwm-sysfs:{tmp_path}", FACTORY_DEFAULT)


def test_the_car_package_imports_neither_sim2real_nor_calibration() -> None:
    code = ("import sys, car.actuators.open, car.camera.capture; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sim2real', 'calibration')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]"
