"""The PCA9685 driver against a register model of the chip."""
from __future__ import annotations

import errno

import pytest

from calibrations import SAVED
from car.actuators.base import ActuatorFault
from car.actuators.calibration import FACTORY_DEFAULT
from car.actuators.pca9685 import Pca9685Driver, pulse_counts
from hw.pca9685 import AI, LED0_ON_L, MODE1, PRE_SCALE, RESTART, SLEEP, Pca9685Model

MOTOR_MID, SERVO_MID = FACTORY_DEFAULT.motor.mid, FACTORY_DEFAULT.servo.mid


@pytest.fixture
def chip():
    """The model; every test must end with both channels full-off and no datasheet rule broken."""
    model = Pca9685Model(address=0x41)
    yield model
    assert model.violations == []
    assert model.pulse_ns(0) is None and model.pulse_ns(1) is None
    assert model.registers[LED0_ON_L + 3] & 0x10 and model.registers[LED0_ON_L + 7] & 0x10


def open_driver(model: Pca9685Model, address: int = 0x41) -> Pca9685Driver:
    return Pca9685Driver(FACTORY_DEFAULT, 1, address, open_bus=lambda bus: model)


def led_block(model: Pca9685Model) -> list[int]:
    return list(model.registers[LED0_ON_L:LED0_ON_L + 8])


def test_prescale_gives_50_hz_and_the_chip_runs_with_auto_increment(chip: Pca9685Model) -> None:
    driver = open_driver(chip)
    assert chip.registers[PRE_SCALE] == 121
    assert chip.registers[MODE1] & (SLEEP | RESTART | AI) == AI
    assert 1 / chip.period_s() == pytest.approx(50, rel=0.001)
    driver.close()


def test_neutral_at_start_as_on_off_counts_of_4096_per_20_ms(chip: Pca9685Model) -> None:
    driver = open_driver(chip)
    assert pulse_counts(MOTOR_MID) == 296 and pulse_counts(SERVO_MID) == 297
    assert led_block(chip) == [0, 0, 296 & 0xFF, 296 >> 8, 0, 0, 297 & 0xFF, 297 >> 8]
    assert chip.pulse_ns(0) == pytest.approx(MOTOR_MID, abs=5_000)
    assert chip.pulse_ns(1) == pytest.approx(SERVO_MID, abs=5_000)
    driver.close()


@pytest.mark.parametrize(("steering", "throttle", "servo_counts", "motor_counts"), [
    (1.0, 0.0, 348, 296),
    (-1.0, 0.0, 246, 296),
    (0.0, 1.0, 297, 268),
    (0.0, -1.0, 297, 328),
])
def test_commands_become_led_registers(chip: Pca9685Model, steering: float, throttle: float,
                                       servo_counts: int, motor_counts: int) -> None:
    driver = open_driver(chip)
    driver.set(steering, throttle)
    assert chip.pulse_counts(1) == servo_counts and chip.pulse_counts(0) == motor_counts
    driver.close()


def test_close_is_neutral_then_full_off_then_bus_closed_and_idempotent(chip: Pca9685Model) -> None:
    driver = open_driver(chip)
    driver.set(0.8, 0.4)
    driver.close()
    driver.close()
    assert chip.closed
    assert led_block(chip) == [0, 0, 0, 0x10, 0, 0, 0, 0x10]
    with pytest.raises(ActuatorFault, match=r"pca9685:1:0x41: closed"):
        driver.neutral()


def test_other_channels_restart_after_the_prescale_sleep(chip: Pca9685Model) -> None:
    """A channel in use by something else sets RESTART on sleep; the driver waits 500 us then restarts."""
    chip.write_byte_data(0x41, LED0_ON_L + 4 * 5 + 2, 100)
    chip.write_byte_data(0x41, LED0_ON_L + 4 * 5 + 3, 0)
    chip.write_byte_data(0x41, MODE1, chip.registers[MODE1] & ~SLEEP)
    driver = open_driver(chip)
    assert chip.pulse_counts(5) == 100
    assert not chip.registers[MODE1] & RESTART
    driver.close()


def test_wrong_address_is_a_fault_at_open(chip: Pca9685Model) -> None:
    with pytest.raises(ActuatorFault, match=r"pca9685:1:0x40: \[Errno 121\] Remote I/O error"):
        open_driver(chip, address=0x40)


def test_missing_bus_device_is_a_fault() -> None:
    with pytest.raises(ActuatorFault, match=r"pca9685:99:0x40: .*No such file or directory.*i2c-99"):
        Pca9685Driver(FACTORY_DEFAULT, 99, 0x40)


def test_a_power_cycled_chip_is_reinitialised_on_the_next_command(chip: Pca9685Model) -> None:
    driver = open_driver(chip)
    chip.present = False
    with pytest.raises(ActuatorFault, match="Remote I/O error"):
        driver.set(0.5, 0.0)
    chip.present = True
    chip.closed = False
    chip.power_cycle()
    driver.set(0.5, 0.0)
    assert chip.registers[PRE_SCALE] == 121
    assert chip.pulse_ns(1) == pytest.approx(1_575_000, abs=5_000)
    driver.close()


def test_model_blocks_prescale_while_awake_and_early_restart() -> None:
    now = [0.0]
    model = Pca9685Model(clock=lambda: now[0])
    model.write_byte_data(0x40, MODE1, 0x01)
    model.write_byte_data(0x40, PRE_SCALE, 121)
    assert model.registers[PRE_SCALE] == 0x1E
    model.write_byte_data(0x40, LED0_ON_L + 2, 50)
    model.write_byte_data(0x40, LED0_ON_L + 3, 0)
    model.write_byte_data(0x40, MODE1, 0x11)
    assert model.registers[MODE1] & RESTART
    model.write_byte_data(0x40, MODE1, 0x01)
    now[0] += 0.0004
    model.write_byte_data(0x40, MODE1, 0x81)
    assert model.registers[MODE1] & RESTART == 0
    assert model.violations == ["PRE_SCALE written while awake (blocked by the chip)",
                                "RESTART written less than 500 us after waking"]


def test_model_block_writes_without_auto_increment_hit_one_register() -> None:
    model = Pca9685Model()
    model.write_i2c_block_data(0x40, LED0_ON_L, [1, 2, 3])
    assert list(model.registers[LED0_ON_L:LED0_ON_L + 2]) == [3, 0]
    model.write_byte_data(0x40, 0xFD, 0x00)
    assert all(model.registers[LED0_ON_L + 4 * c + 3] == 0 for c in range(16))
    model.write_byte_data(0x40, 0x50, 1)
    assert model.violations == ["write to reserved register 0x50"]
    with pytest.raises(OSError) as caught:
        model.read_byte_data(0x42, MODE1)
    assert caught.value.errno == errno.EREMOTEIO


def test_the_first_pulses_are_the_saved_calibration_mids_on_a_bus_opened_once(chip: Pca9685Model) -> None:
    opened = []

    def open_bus(bus: int) -> Pca9685Model:
        opened.append(bus)
        return chip

    driver = Pca9685Driver(SAVED, 1, 0x41, open_bus=open_bus)
    neutral = (chip.pulse_ns(0), chip.pulse_ns(1))
    assert neutral == (pytest.approx(1_500_000, abs=5_000), pytest.approx(1_480_000, abs=5_000))
    assert chip.outputs == [neutral]  # nothing, not even a factory pulse, before the saved mids
    for _ in range(10):
        driver.set(0.0, 1.0)
    assert chip.pulse_ns(0) == pytest.approx(1_350_000, abs=5_000)  # polarity -1: forward is the saved min
    driver.close()
    assert opened == [1] and chip.closed
    assert chip.outputs[-1] == (None, None)
