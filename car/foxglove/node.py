"""The foxglove node: the car's bus, live in Foxglove, through Foxglove's own SDK and WebSocket server.

It never slows the car. Its bus callbacks only keep the newest message of each topic (the newest
status of each node for /diagnostics): a topic that comes faster than the view is sent replaces what
was waiting, nothing queues. A thread of its own converts (`car.foxglove.view`) and logs to the SDK,
and only for channels a client subscribed to; the SDK's server keeps at most BACKLOG messages per client
and drops the oldest beyond it, so a stalled client costs the car nothing.

Served on loopback unless asked otherwise; on another address only through the token gate
(`car.foxglove.gate`) with the console's API tokens, and `token_check` refuses to start without one.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    POLICY_INPUT_TOPIC,
    POLICY_OUTPUT_TOPIC,
    POLICY_TOPIC,
    DiagnosticArray,
    DiagnosticStatus,
)
from car.transport.wire import SIM_POSE_TOPIC, SIM_TRACK_TOPICS

log = logging.getLogger("racer.foxglove")

BUS_TOPICS = (CAMERA_TOPIC, POLICY_INPUT_TOPIC, POLICY_OUTPUT_TOPIC, POLICY_TOPIC, DRIVE_TOPIC, DIAGNOSTICS_TOPIC,
              SIM_POSE_TOPIC, *SIM_TRACK_TOPICS.values())
BACKLOG = 32  # messages per client; the SDK drops the oldest beyond it
IDLE_WAIT_S = 0.5
SDK_MISSING = "--foxglove needs Foxglove's SDK, which the car installs only on demand: pip install 'racer[foxglove]'"


def require_sdk() -> None:
    """ValueError (one line) when foxglove-sdk is not installed."""
    try:
        import foxglove  # noqa: F401
    except ImportError:
        raise ValueError(SDK_MISSING) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_check(host: str, port: int, state_dir: Path) -> Callable[[str], bool] | None:
    """None on a loopback address; else the console's API token check on `state_dir`. ValueError when the car
    has no API token yet: nobody could connect, and an open view would show the car to the whole network."""
    if is_loopback(host):
        return None
    from car.console.auth import Auth
    from car.console.state import StateDir

    auth = Auth(StateDir(state_dir))
    if not auth.tokens():
        raise ValueError(f"--foxglove {host}:{port} is not a loopback address: Foxglove clients must show a console "
                         f"API token (ws://{host}:{port}/?token=...) and {auth.state.tokens} holds none; make one "
                         "with `racer status --car HOST`, or serve on 127.0.0.1 and tunnel (ssh -L)")
    return auth.token_valid


class FoxgloveNode:
    """Subscribes to BUS_TOPICS on `bus` and serves them on (`host`, `port`); OSError when it cannot bind.

    `token_valid`: the gate's check (None: no gate, for loopback). `port` 0 picks a free port (`port`
    attribute after start)."""

    def __init__(self, bus: Any, host: str, port: int, token_valid: Callable[[str], bool] | None = None):
        require_sdk()
        import foxglove
        from foxglove import channels

        from car.foxglove.view import CAMERA_CHANNEL, INPUT_CHANNEL, JSON_SCHEMAS, SCENE_CHANNEL, FoxgloveView

        self.view = FoxgloveView()
        self.context = foxglove.Context()
        self.sent = 0
        self.errors = 0
        self._camera = channels.CompressedImageChannel(CAMERA_CHANNEL, context=self.context)
        self._input = channels.RawImageChannel(INPUT_CHANNEL, context=self.context)
        self._scene = channels.SceneUpdateChannel(SCENE_CHANNEL, context=self.context)
        self._json = {topic: foxglove.Channel(topic, schema=schema, context=self.context)
                      for topic, schema in JSON_SCHEMAS.items()}
        self._pending: dict[str, Any] = {}
        self._statuses: dict[str, DiagnosticStatus] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        for topic in BUS_TOPICS:
            bus.subscribe(topic, self._on_diagnostics if topic == DIAGNOSTICS_TOPIC else
                          lambda msg, topic=topic: self._keep(topic, msg))
        self._gate = None
        upstream = "127.0.0.1" if token_valid is not None else host
        try:
            self.server = foxglove.start_server(name="racer", host=upstream, port=0 if token_valid else port,
                                                context=self.context, message_backlog_size=BACKLOG)
        except RuntimeError as exc:  # the SDK's FoxgloveError, e.g. the port is taken
            raise OSError(f"cannot serve the Foxglove view on {upstream}:{port}: {exc}") from None
        self.port = self.server.port
        if token_valid is not None:
            from car.foxglove.gate import TokenGate
            try:
                self._gate = TokenGate(host, port, self.server.port, token_valid)
            except BaseException:
                self.server.stop()
                raise
            self.port = self._gate.port
        self._thread = threading.Thread(target=self._run, name="foxglove", daemon=True)
        self._thread.start()
        log.info("foxglove: ws://%s:%d%s", host, self.port, " (API token required)" if token_valid else "")

    def _keep(self, topic: str, msg: Any) -> None:
        with self._lock:
            self._pending[topic] = msg
        self._wake.set()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                self._statuses[status.name] = status
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_WAIT_S)
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, {}
                statuses, self._statuses = self._statuses, {}
            if statuses:
                pending[DIAGNOSTICS_TOPIC] = DiagnosticArray(status=tuple(statuses.values()))
            for topic, msg in pending.items():
                try:
                    self._send(topic, msg)
                except Exception as exc:  # a message the view cannot show must not end the view
                    self.errors += 1
                    log.warning("foxglove: %s not shown: %s: %s", topic, type(exc).__name__, exc)

    def _send(self, topic: str, msg: Any) -> None:
        view = self.view
        if topic == CAMERA_TOPIC:
            if self._camera.has_sinks():
                self._camera.log(view.camera(msg))
        elif topic == POLICY_INPUT_TOPIC:
            if self._input.has_sinks():
                self._input.log(view.model_input(msg))
        elif topic == SIM_POSE_TOPIC:
            self._scene.log(view.pose(msg))  # the path grows whether or not anyone watches
        elif topic in SIM_TRACK_TOPICS.values():
            self._scene.log(view.track_line(topic, msg))
        elif topic == POLICY_OUTPUT_TOPIC:
            self._json[topic].log(view.policy_output(msg))
        elif topic in (POLICY_TOPIC, DRIVE_TOPIC):
            self._json[topic].log(view.drive(msg))
        else:
            for channel, message in view.diagnostics(msg).items():
                self._json[channel].log(message)
        self.sent += 1

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        if self._gate is not None:
            self._gate.close()
        self.server.stop()
