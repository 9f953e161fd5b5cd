"""Transports carry the node messages: `local` (in-process), `dds` (Cyclone DDS, ROS 2 wire), `ros` (rclpy)."""
