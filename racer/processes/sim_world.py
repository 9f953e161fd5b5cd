"""The simulator world as a node process: the car's body and its camera, in simulated time.

Physics steps at PHYSICS_HZ and each step is published on /clock (rosgraph_msgs/Clock), so every
node's timers and timeouts follow simulated time as ROS nodes do with use_sim_time. Every few steps
a rendered frame goes out on /sim/camera/image_raw for the camera node; the actuator node's
commands come back on /sim/servo and act on the body from the next step. With each frame the car's true
pose goes out on /sim/pose, and every second the track's centre line and borders on /sim/track/*, in the
track's frame (`map`, metres), for a visualiser. `--sim-rate` paces
simulated time against the wall clock (2.0 = twice real time); when the machine cannot keep up, simulated
time slows down rather than skipping, so what the nodes see stays consistent.
"""
from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from car.clock import WallClock
from car.graph.adapters import Bus
from car.messages import (
    DIAGNOSTICS_TOPIC,
    OK,
    WARN,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    Image,
    KeyValue,
    Point,
    PolygonStamped,
    PoseStamped,
    Quaternion,
    Time,
)
from car.transport.wire import (
    CLOCK_TOPIC,
    SIM_CAMERA_TOPIC,
    SIM_FRAME,
    SIM_POSE_TOPIC,
    SIM_SERVO_TOPIC,
    SIM_TRACK_TOPICS,
    ServoCtrl,
)
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator, StepInfo

log = logging.getLogger("racer.sim")

PHYSICS_HZ = 120.0
DIAGNOSTICS_PERIOD_S = 1.0


class SimWorld:
    def __init__(self, bus: Bus, track: Track, fps: float):
        if not fps > 0:
            raise ValueError(f"camera fps must be positive, got {fps}")
        self.sim = Simulator(track, dt=1.0 / PHYSICS_HZ)
        self.substeps = max(1, round(PHYSICS_HZ / fps))
        self.steps = 0
        self.laps: list[float] = []
        self.info: StepInfo = self.sim.info
        self._clock = bus.publisher(CLOCK_TOPIC)
        self._frames = bus.publisher(SIM_CAMERA_TOPIC)
        self._diagnostics = bus.publisher(DIAGNOSTICS_TOPIC)
        self._pose = bus.publisher(SIM_POSE_TOPIC)
        lines = {"center_line": track.centre, "inner_border": track.inner, "outer_border": track.outer}
        self._track = [(bus.publisher(topic), lines[name]) for name, topic in SIM_TRACK_TOPICS.items()]
        self._next_diagnostics = 0.0
        bus.subscribe(SIM_SERVO_TOPIC, self.on_servo)
        self._publish_time_and_frame()

    def on_servo(self, cmd: ServoCtrl) -> None:
        try:
            self.sim.apply(cmd.angle, cmd.throttle)
        except ValueError as exc:  # a non-finite command: the body gets neutral, as a servo would ignore it
            log.error("rejected servo command: %s", exc)
            self.sim.apply(0.0, 0.0)

    def step(self) -> None:
        previous = self.info
        self.info = self.sim.step()
        self.steps += 1
        if self.info.lap_completed:
            self.laps.append(self.info.lap_time)
            log.info("lap %d: %.2f s", len(self.laps), self.info.lap_time)
        changed = self.info.lap_completed or self.info.off_track != previous.off_track
        if changed or self.info.time >= self._next_diagnostics:
            self.publish_diagnostics()
        if self.steps % self.substeps == 0:
            self._publish_time_and_frame()
        else:
            self._clock(Time.from_seconds(self.info.time))

    def _publish_time_and_frame(self) -> None:
        stamp = Time.from_seconds(self.sim.time)
        self._clock(stamp)
        self._frames(Image(Header(stamp, "camera"), self.sim.render()))
        info = self.info
        self._pose(PoseStamped(Header(stamp, SIM_FRAME), Point(info.x, info.y, 0.0),
                               Quaternion(0.0, 0.0, math.sin(info.yaw / 2), math.cos(info.yaw / 2))))

    def publish_diagnostics(self) -> None:
        """The world's status, and the track's lines with it (a visualiser that joins late gets them within
        a period)."""
        info = self.info
        self._next_diagnostics = info.time + DIAGNOSTICS_PERIOD_S
        header = Header(Time.from_seconds(info.time), SIM_FRAME)
        for publish, points in self._track:
            publish(PolygonStamped(header, tuple(Point(float(x), float(y)) for x, y in points)))
        self._diagnostics(DiagnosticArray(Header(Time.from_seconds(info.time)), (DiagnosticStatus(
            level=WARN if info.off_track else OK, name="simulator",
            message="off track" if info.off_track else f"lap {info.laps + 1}",
            hardware_id=self.sim.track.name,
            values=(KeyValue("time", f"{info.time:.3f}"), KeyValue("laps", str(info.laps)),
                    KeyValue("lap_times", ",".join(f"{t:.3f}" for t in self.laps)),
                    KeyValue("progress", f"{info.progress:.2f}"), KeyValue("off_track", str(info.off_track).lower()),
                    KeyValue("x", f"{info.x:.3f}"), KeyValue("y", f"{info.y:.3f}"),
                    KeyValue("speed", f"{info.speed:.3f}"))),)))


def run_world(args: argparse.Namespace, params: dict[str, dict[str, Any]]) -> int:
    """`racer node sim --track NAME [--sim-rate R]`: the world, stepped until SIGTERM/SIGINT."""
    from car.graph.multiprocess import spin_until_signal
    from car.transport import open_bus

    if not args.track:
        raise ValueError("the sim node needs --track NAME")
    if not (math.isfinite(args.sim_rate) and args.sim_rate > 0):
        raise ValueError(f"--sim-rate must be a positive number, got {args.sim_rate}")
    track = Track.load(args.track)
    bus = open_bus(args.transport, "sim", args.ros_args)
    world = SimWorld(bus, track, float(params["camera"].get("fps", 15.0)))
    bus.timer(1.0 / (PHYSICS_HZ * args.sim_rate), world.step, WallClock())
    log.info("%s (%.2f m) at %.2fx real time", track.name, track.length, args.sim_rate)
    spin_until_signal(bus, [])
    return 0
