"""The on-car runtime: camera sources, the policy (model bundles, OpenVINO), control (modes, mux,
watchdog), actuators, the device console and the ROS 2 / DDS node wiring. It never imports sim2real,
calibration or racer (tests/test_layout.py).

Importing it declines OpenVINO's usage reports for the whole process (car/usage_reports.py)."""
from car.usage_reports import decline_openvino_usage_reports

decline_openvino_usage_reports()
