"""Models of the car's hardware that the driver tests run against: sysfs PWM, PCA9685, Maestro."""
