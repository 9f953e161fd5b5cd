"""The live Foxglove view, seen by a client written from the Foxglove WebSocket protocol's public spec (not
the SDK's), against a running simulated car; its token gate beyond loopback; a stalled client costs the car nothing."""
import base64
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.exceptions import ConnectionClosed, InvalidStatus

from car.console.auth import Auth
from car.console.state import StateDir
from car.foxglove.layout import layout_json
from car.foxglove.node import BACKLOG, FoxgloveNode, token_check
from car.foxglove.view import CHANNELS as VIEW_CHANNELS, FoxgloveView
from car.messages import (
    CAMERA_TOPIC,
    DRIVE_TOPIC,
    ERROR,
    OK,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    Image,
    KeyValue,
    Time,
    drive_msg,
)
from car.policy.introspect import input_image, output_array
from car.transport.local import LocalBus
from dds_support import free_port
from racer.bench.foxglove import FoxgloveClient

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {"/camera/image_raw/compressed", "/policy/input", "/policy/output", "/policy/drive", "/drive",
            "/control/status", "/policy/domain_shift", "/sim/scene"}
LAYOUT = ROOT / "docs" / "foxglove" / "racer.layout.json"


def decoder(channel: dict):
    """payload -> message, from what the server advertised: JSON, or protobuf from its FileDescriptorSet."""
    if channel["encoding"] == "json":
        return json.loads
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))
    return cls.FromString


def connect(port: int, proc: subprocess.Popen, deadline_s: float = 90.0) -> FoxgloveClient:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return FoxgloveClient(f"ws://127.0.0.1:{port}")
        except OSError:
            assert proc.poll() is None, "the car ended before its Foxglove view came up"
            assert time.monotonic() < deadline, "no Foxglove view within the deadline"
            time.sleep(0.3)


def watch(transport: str) -> tuple[dict[str, list], set[str]]:
    """`racer car --sim --autostart --foxglove` on `transport`, watched by the spec client until it decoded a
    message of every channel and the scene's whole track (its three lines), car and path: (decoded messages by
    channel, scene ids)."""
    port = free_port()
    car = subprocess.Popen([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--autostart",
                            "--transport", transport, "--foxglove", f"127.0.0.1:{port}"], cwd=ROOT,
                           stderr=subprocess.DEVNULL)
    decoded: dict[str, list] = {}
    scene_ids: set[str] = set()
    try:
        client = connect(port, car)
        assert client.ws.subprotocol == "foxglove.sdk.v1"  # the SDK's name for the spec's v1 protocol
        assert client.server_info["name"] == "racer"
        client.wait_for_channels(CHANNELS)
        assert {c["topic"] for c in client.channels.values()} == CHANNELS
        client.subscribe()
        deadline = time.monotonic() + 90
        while (set(decoded) != CHANNELS or not {"track", "car", "path"} <= scene_ids) and time.monotonic() < deadline:
            message = client.next_message()
            topic = message.channel["topic"]
            value = decoder(message.channel)(message.payload)
            decoded.setdefault(topic, []).append(value)
            if topic == "/sim/scene":
                # the track's three lines are three topics: on dds they arrive one by one, and the track entity grows
                scene_ids |= {entity.id for entity in value.entities if entity.id != "track" or len(entity.lines) == 3}
        client.close()
    finally:
        car.terminate()
        car.wait(30)
    return decoded, scene_ids


@pytest.mark.parametrize("transport", ["local", "dds"])
def test_a_spec_client_subscribes_to_every_channel_and_decodes_each_from_a_simulated_car(transport):
    if transport == "dds":
        from dds_support import loopback_domain
        with loopback_domain():
            decoded, scene_ids = watch(transport)
    else:
        decoded, scene_ids = watch(transport)
    assert set(decoded) == CHANNELS and {"track", "car", "path"} <= scene_ids

    camera = decoded["/camera/image_raw/compressed"][0]
    assert camera.format == "jpeg"
    assert cv2.imdecode(np.frombuffer(camera.data, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    model_input = decoded["/policy/input"][0]
    assert model_input.encoding == "32FC1" and model_input.step == model_input.width * 4
    pixels = np.frombuffer(model_input.data, "<f4").reshape(model_input.height, model_input.width)
    assert np.isfinite(pixels).all() and pixels.std() > 0  # a picture of the track, not a blank
    output = decoded["/policy/output"][-1]
    assert output["kind"] == "continuous" and len(output["values"]) == 2 and output["action"] is None
    for topic in ("/policy/drive", "/drive"):
        drive = decoded[topic][-1]
        assert drive["steering_deg"] == pytest.approx(np.degrees(drive["steering_rad"]))
    assert any(d["speed_mps"] > 0 for d in decoded["/drive"])  # --autostart: the car drives
    status = decoded["/control/status"][-1]
    assert status["mode"] == "autonomous" and status["running"] and status["faults"] == []
    assert 0 <= decoded["/policy/domain_shift"][-1]["score"] < 5  # the bundled model in its own world
    entities = {e.id: e for update in decoded["/sim/scene"] for e in update.entities}
    lines = entities["track"].lines
    assert len(lines) == 3 and all(len(line.points) > 50 for line in lines)  # centre line and both borders
    assert entities["car"].frame_id == "map" and len(entities["car"].cubes) == 1
    assert len(entities["path"].lines[0].points) >= 1


@pytest.mark.parametrize("transport", ["local", "dds"])
def test_beyond_loopback_without_an_api_token_the_view_is_refused(tmp_path, transport):
    done = subprocess.run([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--transport", transport,
                           "--foxglove", "0.0.0.0:8765", "--state-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "not a loopback address" in lines[-1] and "API token" in lines[-1]
    assert not any("foxglove: ws://" in line for line in lines)  # nothing was served
    assert not any("started (pid" in line for line in lines)  # nor any node started


def test_beyond_loopback_only_a_console_api_token_gets_through(tmp_path):
    """The gate's check is the console's own (token_check for a non-loopback host); the test serves it on
    loopback, as tests never listen beyond it."""
    auth = Auth(StateDir(tmp_path).create())
    _, token, _ = auth.create_token("laptop")
    check = token_check("192.0.2.1", 8765, tmp_path)
    assert check is not None
    node = FoxgloveNode(LocalBus(), "127.0.0.1", 0, check)
    try:
        for url in ("/", "/?token=racer_0000_forged", f"/?token={token}x"):
            with pytest.raises(InvalidStatus, match="401"):
                FoxgloveClient(f"ws://127.0.0.1:{node.port}{url}")
        for client in (FoxgloveClient(f"ws://127.0.0.1:{node.port}/?token={token}"),
                       FoxgloveClient(f"ws://127.0.0.1:{node.port}/",
                                      additional_headers={"Authorization": f"Bearer {token}"})):
            assert client.server_info["op"] == "serverInfo"
            client.close()
        assert node._gate.refused == 3
    finally:
        node.close()


def test_a_viewer_whose_token_is_revoked_is_closed(tmp_path):
    """Revoked in another process (the console's own Auth on the same state dir): the gate's next check closes
    the viewer's connection, and the token no longer gets a new one through."""
    _, token, _ = Auth(StateDir(tmp_path).create()).create_token("laptop")
    check = token_check("192.0.2.1", 8765, tmp_path)
    node = FoxgloveNode(LocalBus(), "127.0.0.1", 0, check)
    try:
        client = FoxgloveClient(f"ws://127.0.0.1:{node.port}/?token={token}")
        assert client.server_info["op"] == "serverInfo" and node._gate.revoked == 0
        console = Auth(StateDir(tmp_path).create())
        assert console.revoke_token(console.tokens()[0]["id"])
        with pytest.raises(ConnectionClosed):
            while True:
                client.ws.recv(timeout=30)
        assert node._gate.revoked == 1
        with pytest.raises(InvalidStatus, match="401"):
            FoxgloveClient(f"ws://127.0.0.1:{node.port}/?token={token}")
    finally:
        node.close()


def test_a_stalled_client_loses_frames_and_the_bus_never_waits_for_it():
    """A client that stops reading: every /drive is still delivered on the bus at once, the view keeps only
    the newest of each topic, and the server drops what the client cannot take (it gets the latest, not a queue)."""
    bus = LocalBus()
    node = FoxgloveNode(bus, "127.0.0.1", 0)
    drives: list[float] = []
    bus.subscribe(DRIVE_TOPIC, lambda msg: drives.append(msg.header.stamp.to_seconds()))
    camera, drive = bus.publisher(CAMERA_TOPIC), bus.publisher(DRIVE_TOPIC)
    stalled = FoxgloveClient(f"ws://127.0.0.1:{node.port}", max_queue=1)  # stops reading once one frame waits
    stalled.wait_for_channels({"/camera/image_raw/compressed", "/drive"})
    stalled.subscribe({"/camera/image_raw/compressed", "/drive"})
    noise = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # ~0.5 MB a JPEG
    frames = 200
    try:
        for i in range(1, frames + 1):
            camera(Image(Header(Time(i, 0), "camera"), np.roll(noise, i, axis=1)))
            drive(drive_msg(Time(i, 0), 0.1, 1.0))
            sent = node.sent
            deadline = time.monotonic() + 10  # safety deadline: the view's thread shows each pair
            while node.sent < sent + 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        assert drives == [float(i) for i in range(1, frames + 1)]  # the bus delivered every /drive, in order
        assert len(node._pending) <= 2  # latest-wins: at most one waiting message per topic
        received = []
        try:
            while True:
                message = stalled.next_message(timeout_s=3.0)
                if message.channel["topic"] == "/drive":
                    received.append(json.loads(message.payload)["stamp"])
        except TimeoutError:
            pass
    finally:
        stalled.close()
        node.close()
    assert received and received[-1] == frames  # the newest command reached the client
    assert len(received) < frames - BACKLOG  # and much of the rest was dropped, not queued


def test_the_layout_file_is_current_and_shows_every_channel():
    assert LAYOUT.read_text() == layout_json(), ("regenerate: python -m car.foxglove.layout > "
                                                 "docs/foxglove/racer.layout.json")
    text = LAYOUT.read_text()
    assert set(VIEW_CHANNELS) == CHANNELS
    assert all(f'"{channel}' in text for channel in CHANNELS)  # each channel has its panel


def test_without_the_sdk_the_view_is_one_line_that_says_what_to_install():
    code = ("import sys; sys.modules['foxglove'] = None; from racer.cli import main; "
            "sys.exit(main(['car', '--sim', 'reinvent_base', '--foxglove', '127.0.0.1:8765']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("racer car: --foxglove needs Foxglove's SDK, which the car "
                                                    "installs only on demand: pip install 'racer[foxglove]'")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_model_input_image_is_the_tensor_channel_by_channel(layout):
    """A 3-frame stack of 2x4 grey frames -> one 2x12 32FC1 image, oldest frame left, values untouched."""
    frames = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4) / 7.0  # (C, H, W)
    tensor = frames[None] if layout == "NCHW" else np.moveaxis(frames, 0, -1)[None]
    image = input_image(tensor, layout)
    assert image.dtype == np.float32 and image.shape == (2, 12)
    assert np.array_equal(image, np.concatenate(list(frames), axis=1))
    assert output_array(np.array([[0.1, 0.7, 0.2]]), discrete=True).dim[0].label == "action"
    continuous = output_array(np.array([2.5, -0.5]), discrete=False)
    assert continuous.dim[0].label == "steering_speed" and continuous.data == (2.5, -0.5)  # before any clip


def test_the_gate_closes_a_request_it_cannot_read_without_reaching_the_server():
    """A head past the gate's limit, or a connection closed mid-head: closed, nothing forwarded, nothing refused
    twice; the gate still serves the next viewer."""
    node = FoxgloveNode(LocalBus(), "127.0.0.1", 0, lambda token: token == "good")
    try:
        for data in (b"GET /?token=good HTTP/1.1\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n", b"GET / HTTP/1.1\r\n"):
            with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
                raw.sendall(data)
                raw.shutdown(socket.SHUT_WR)
                assert raw.recv(100) == b""  # closed without an answer: not a 101, not a 401
        assert node._gate.refused == 0
        client = FoxgloveClient(f"ws://127.0.0.1:{node.port}/?token=good")
        assert client.server_info["op"] == "serverInfo"
        client.close()
    finally:
        node.close()


def test_a_taken_port_is_an_os_error_that_names_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve the Foxglove view on 127.0.0.1:{port}: .*in use"):
            FoxgloveNode(LocalBus(), "127.0.0.1", port)


def test_the_view_reads_mode_latch_faults_and_the_chosen_action():
    """Control's latch and a node's fault as /control/status shows them, cleared when the node is well again;
    a discrete model's output names the action taken."""
    view = FoxgloveView()
    control = DiagnosticStatus(ERROR, "control", "latched", values=(
        KeyValue("mode", "autonomous"), KeyValue("running", "false"), KeyValue("latched", "actuator: no device"),
        KeyValue("emergency_stop", "true"), KeyValue("watchdog", "ok")))
    status = view.diagnostics(DiagnosticArray(status=(control, DiagnosticStatus(ERROR, "actuator", "no device"))))
    shown = status["/control/status"]
    assert (shown["mode"], shown["running"], shown["latched"], shown["emergency_stop"]) == (
        "autonomous", False, "actuator: no device", True)
    assert {"node": "actuator", "message": "no device"} in shown["faults"]
    assert "/policy/domain_shift" not in status  # no policy heard yet: nothing to show rather than a made-up score
    healed = view.diagnostics(DiagnosticArray(status=(DiagnosticStatus(OK, "actuator", "ok"),
                                                      DiagnosticStatus(OK, "policy", "ok", values=(
                                                          KeyValue("domain_shift", "2.750"),
                                                          KeyValue("warning", "1.200"))))))
    assert healed["/control/status"]["faults"] == [{"node": "control", "message": "latched"}]  # the latch stays
    assert healed["/policy/domain_shift"] == {"score": 2.75, "warning": 1.2, "uncertainty": None, "infer_ms": None}
    output = view.policy_output(output_array(np.array([0.1, 0.6, 0.3]), discrete=True))
    assert output["kind"] == "discrete" and output["action"] == 1
    assert output["values"] == pytest.approx([0.1, 0.6, 0.3])
