"""Actuator drivers: turn normalised steering/throttle commands into servo and ESC pulses."""
