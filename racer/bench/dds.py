"""Transport figures for `racer bench`: image latency between two processes, and camera -> /drive across node
processes, on racer's Cyclone DDS transport (`dds`) or on real rclpy (`ros`, after `make ros`).

Both run on a private random ROS domain, so a car graph running on the same machine neither
disturbs them nor sees them. Latency is the receiver's wall clock minus the message's stamp,
which the sender took from the same clock (one machine).
"""
from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from car.messages import CAMERA_TOPIC, DRIVE_TOPIC, AckermannDriveStamped, Header, Image, Time
from car.transport import NodeBus, open_bus
from car.transport.dds import cyclone_environment
from car.transport.ros import ros_environment
from car.transport.wire import CONTROL_REQUEST_TOPIC
from racer.bench.stats import percentiles

IMAGE_SHAPE = (120, 160, 3)
WARMUP = 10
START_TIMEOUT_S = 60.0
STALL_S = 1.0


def _private_domain() -> int:
    return random.randint(100, 230)


def _child_env(domain: int) -> dict[str, str]:
    """Loopback-only for either transport (unless the user configured otherwise), on the private domain."""
    return {**ros_environment(cyclone_environment()), "ROS_DOMAIN_ID": str(domain)}


@contextmanager
def _processes(argvs: list[list[str]], env: dict[str, str]) -> Iterator[list[subprocess.Popen]]:
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in argvs]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _collect(bus: NodeBus, topic: str, latency: Callable[[Any], float | None], count: int,
             procs: list[subprocess.Popen], on_idle: Callable[[], None] | None = None) -> list[float]:
    """Spin `bus` until `count` samples of `latency(msg)` (None = not a sample) after the warm-up."""
    samples: list[float] = []
    last = [time.monotonic()]

    def keep(msg: Any) -> None:
        value = latency(msg)
        if value is not None:
            samples.append(value)
            last[0] = time.monotonic()

    bus.subscribe(topic, keep)
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(samples) < count + WARMUP:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a benchmark process exited early")
        if not samples and time.monotonic() > deadline:
            raise RuntimeError(f"no {topic} message within {START_TIMEOUT_S:.0f} s")
        # Before the first sample, and whenever they stop: on a loaded machine control's watchdog can stop
        # the car on a late frame (latched until a start), and the samples would never come again.
        if on_idle is not None and (not samples or time.monotonic() - last[0] > STALL_S):
            on_idle()
        bus.spin_once()
    return samples[WARMUP:]


def bench_dds(messages: int = 300, rate_hz: float = 30.0, transport: str = "dds") -> dict[str, Any]:
    """p50/p99 of a 160x120 bgr8 sensor_msgs/Image published at `rate_hz` to another process on loopback,
    both ends on `transport`."""
    domain = _private_domain()
    argv = [sys.executable, "-m", "racer.bench.dds", "--publish", str(rate_hz), "--transport", transport]
    bus = open_bus(transport, "bench_sub", domain=domain)
    try:
        with _processes([argv], _child_env(domain)) as procs:
            samples = _collect(bus, CAMERA_TOPIC, lambda msg: time.time() - msg.header.stamp.to_seconds(),
                               messages, procs)
    finally:
        bus.close()
    return {**percentiles(samples), "rate_hz": rate_hz, "bytes": int(np.prod(IMAGE_SHAPE))}


def _publish_images(rate_hz: float, transport: str) -> None:
    """The sending side of bench_dds, in its own process until terminated."""
    bus = open_bus(transport, "bench_pub")
    publish = bus.publisher(CAMERA_TOPIC)
    frame = np.random.default_rng(0).integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    period = 1.0 / rate_hz
    due = time.monotonic()
    while True:
        publish(Image(Header(Time.from_seconds(time.time()), "camera"), frame))
        due += period
        time.sleep(max(0.0, due - time.monotonic()))


def _track_frames(folder: Path, count: int = 60) -> None:
    """Simulator frames around reinvent_base, as a camera folder for the multi-process pipeline."""
    import cv2

    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    sim = Simulator(Track.load("reinvent_base"))
    for i in range(count):
        sim.reset(start_index=i * sim.track.waypoint_count // count)
        cv2.imwrite(str(folder / f"{i:03d}.png"), sim.render())


def bench_multiprocess(model: Path, frames: int = 150, transport: str = "dds") -> dict[str, Any]:
    """Camera frame captured -> its /drive command received, with camera, policy and control in their own
    processes (the graph of `racer car --transport TRANSPORT`, timed from a fourth process)."""
    from car.control.requests import control_request_json

    domain = _private_domain()
    bus = open_bus(transport, "bench_drive", domain=domain)
    seen: set[Time] = set()

    def latency(msg: AckermannDriveStamped) -> float | None:
        if msg.drive.speed == 0.0 or msg.header.stamp in seen:
            return None  # neutral, or the same command again on a control tick
        seen.add(msg.header.stamp)
        return time.time() - msg.header.stamp.to_seconds()

    start = bus.publisher(CONTROL_REQUEST_TOPIC)
    next_start = [0.0]

    def keep_starting() -> None:
        """The control node has just started: commands sent before discovery are lost, so repeat."""
        if time.monotonic() >= next_start[0]:
            start(control_request_json("set_mode", mode="autonomous"))
            start(control_request_json("start"))
            next_start[0] = time.monotonic() + 0.5

    try:
        with tempfile.TemporaryDirectory() as tmp:
            _track_frames(Path(tmp))
            node = [sys.executable, "-m", "racer.cli", "node", "--transport", transport]
            argvs = [node + ["camera", "--camera", f"images:{tmp}"], node + ["policy", "--model", str(model)],
                     node + ["control"]]
            with _processes(argvs, _child_env(domain)) as procs:
                samples = _collect(bus, DRIVE_TOPIC, latency, frames, procs, keep_starting)
    finally:
        bus.close()
    return percentiles(samples)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--publish"] or len(sys.argv) != 5 or sys.argv[3] != "--transport":
        sys.exit("usage: python -m racer.bench.dds --publish RATE_HZ --transport dds|ros (the sender of bench_dds)")
    _publish_images(float(sys.argv[2]), sys.argv[4])
