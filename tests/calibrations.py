"""Calibrations the tests drive with besides the factory one."""
from __future__ import annotations

from dataclasses import replace

from car.actuators.calibration import FACTORY_DEFAULT, PulseRange

# A car calibrated away from factory (issue 9): motor mid 1500000, min 1350000, polarity -1; servo
# mid 1480000. On it the factory's 1446000 ns motor mid is 36% forward throttle.
SAVED = replace(FACTORY_DEFAULT,
                motor=PulseRange(min=1_350_000, mid=1_500_000, max=1_650_000, polarity=-1),
                servo=replace(FACTORY_DEFAULT.servo, mid=1_480_000))
# Another, to tell which of two files a car read.
OTHER = replace(FACTORY_DEFAULT, servo=replace(FACTORY_DEFAULT.servo, mid=1_460_000))
