"""The recorder node: the drive's topics into a rosbag2 (MCAP) that `ros2 bag`, Foxglove and rosbags open.

Messages are written as the CDR bytes the dds transport puts on the wire (`car.transport.wire`), stamped with
the node clock at reception (sim time under `--sim`, as rosbag2 does with use_sim_time).
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from car.clock import Clock
from car.graph.adapters import Bus
from car.messages import CAMERA_TOPIC, DIAGNOSTICS_TOPIC, DRIVE_TOPIC, POLICY_TOPIC
from car.transport.rosbag import typestore
from car.transport.wire import WireType, wire_type

RECORDED_TOPICS = (CAMERA_TOPIC, POLICY_TOPIC, DRIVE_TOPIC, DIAGNOSTICS_TOPIC)
BEST_EFFORT_TOPICS = {CAMERA_TOPIC}
_NEVER = QosTime(0, 0)


def new_bag_path(directory: Path) -> Path:
    """A fresh bag directory inside `directory`: racer_YYYYmmdd-HHMMSS, suffixed when taken (a restart)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"record directory {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / time.strftime("racer_%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def _offered_qos(topic: str) -> Qos:
    reliability = QosReliability.BEST_EFFORT if topic in BEST_EFFORT_TOPICS else QosReliability.RELIABLE
    return Qos(QosHistory.KEEP_LAST, 1, reliability, QosDurability.VOLATILE, _NEVER, _NEVER,
               QosLiveliness.AUTOMATIC, _NEVER, False)


class BagRecorder:
    def __init__(self, bus: Bus, clock: Clock, directory: str | Path, topics: tuple[str, ...] = RECORDED_TOPICS):
        self.clock = clock
        self.path = new_bag_path(Path(directory))
        self.counts: Counter[str] = Counter()
        store = typestore()
        writer = Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer: Writer | None = writer
        writer.open()
        for topic in topics:
            wire = wire_type(topic)
            connection = writer.add_connection(topic, wire.ros_type, typestore=store,
                                               offered_qos_profiles=[_offered_qos(topic)])
            bus.subscribe(topic, lambda msg, c=connection, w=wire, t=topic: self._write(c, w, t, msg))

    def _write(self, connection: Any, wire: WireType, topic: str, msg: Any) -> None:
        if self._writer is None:
            return
        self._writer.write(connection, int(round(self.clock.now() * 1e9)), wire.encode(msg))
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the MCAP summary and metadata.yaml; a bag that is not closed cannot be indexed."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
