"""The actuator: the node core (ROS units on /drive -> normalised commands, its own watchdog) and the
drivers that turn those commands into servo and ESC pulses."""
