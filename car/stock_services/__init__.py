"""The stock AWS DeepRacer device's ROS 2 services, answered by racer's nodes on the `ros` transport so that
`ros2 service call` and tools written for the stock car drive a racer car: `ctrl_pkg` (mode, start/stop, speed
limit, calibration, model status; on the control node) and `inference_pkg` (model load; on the policy node).
Thin adapters: every request goes through the node's own request path."""
