"""The rosbag2 type store of the car's messages: what the recorder writes with and `bag:PATH` reads with."""
from __future__ import annotations

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

EXTRA_TYPES = {
    "ackermann_msgs/msg/AckermannDrive": (
        "float32 steering_angle\nfloat32 steering_angle_velocity\nfloat32 speed\nfloat32 acceleration\nfloat32 jerk\n"),
    "ackermann_msgs/msg/AckermannDriveStamped": "std_msgs/Header header\nackermann_msgs/AckermannDrive drive\n",
    "deepracer_interfaces_pkg/msg/ServoCtrlMsg": "float32 angle\nfloat32 throttle\n",
}


def typestore() -> Typestore:
    """ROS 2 Humble's types plus ackermann_msgs and the DeepRacer servo message, which Humble's store lacks."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    for name, text in EXTRA_TYPES.items():
        store.register(get_types_from_msg(text, name))
    return store
