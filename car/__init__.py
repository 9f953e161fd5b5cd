"""The on-car runtime: camera sources, the policy (model bundles, OpenVINO), control (modes, mux,
watchdog), actuators, the device console and the ROS 2 / DDS node wiring. It never imports sim2real,
calibration or racer (tests/test_layout.py)."""
