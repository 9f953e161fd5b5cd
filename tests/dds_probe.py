"""A DDS listener in its own process that knows ROS 2's conventions but not the car's encoder.

`python tests/dds_probe.py TOPIC...` joins ROS_DOMAIN_ID's domain, takes one raw sample of
each `rt/<topic>` (type names as rmw_cyclonedds spells them), decodes it with rosbags' ROS 2
Humble type store, reads the writers' QoS from DDS discovery, and prints one JSON object.
"""
import json
import os
import sys
import time
from typing import Any

from cyclonedds._clayer import ddspy_take
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from car.transport.rosbag import typestore
from car.transport.wire import wire_type

ANY = SampleState.Any | ViewState.Any | InstanceState.Any
TIMEOUT_S = 30.0


def plain(value):
    """A rosbags message as JSON-able data (numpy arrays as lists)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__ if name != "__msgtype__"}
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main(topics: list[str]) -> None:
    store = typestore()
    participant = DomainParticipant(int(os.environ.get("ROS_DOMAIN_ID", "0")))
    readers = {}
    for topic in topics:
        wire = wire_type(topic)  # only for the IDL struct that names the type; the bytes go to rosbags
        idl: type[IdlStruct] = wire.idl
        dds_topic = Topic(participant, "rt" + topic, idl)
        readers[topic] = (DataReader(participant, dds_topic, Qos(Policy.Reliability.BestEffort)), wire.ros_type)
    publications = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
    out: dict[str, Any] = {}
    qos: dict[str, Any] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(out) < len(topics) and time.monotonic() < deadline:
        for topic, (reader, ros_type) in readers.items():
            for data, info in ddspy_take(reader._ref, ANY, 1):
                if info.valid_data and topic not in out:
                    out[topic] = {"type": ros_type, "hex": bytes(data).hex(),
                                  "decoded": plain(store.deserialize_cdr(data, ros_type))}
        for pub in publications.take(64):
            if pub.topic_name.startswith("rt/"):
                qos[pub.topic_name] = {"type_name": pub.type_name, "qos": str(pub.qos)}
        time.sleep(0.01)
    print(json.dumps({"samples": out, "writers": qos}))


if __name__ == "__main__":
    main(sys.argv[1:])
