"""Recording to rosbag2 (MCAP) and replaying a bag as the camera."""
import subprocess
import sys

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from car.camera.bag import BagSource
from car.camera.capture import open_camera
from car.camera.source import CameraFault, RecordingEnded
from car.clock import SimClock
from car.graph.recorder import RECORDED_TOPICS, BagRecorder, new_bag_path
from car.messages import (
    CAMERA_TOPIC,
    DIAGNOSTICS_TOPIC,
    DRIVE_TOPIC,
    POLICY_TOPIC,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    Image,
    Time,
    drive_msg,
)
from car.transport.local import LocalBus
from car.transport.rosbag import typestore
from dds_support import driving_model, recorded_commands, replay_policy


def frame(i: int) -> np.ndarray:
    return np.full((120, 160, 3), i, np.uint8)


@pytest.fixture
def small_bag(tmp_path):
    """Five frames at 15 Hz with a command and diagnostics each, recorded through the local bus."""
    bus, clock = LocalBus(), SimClock(100.0)
    recorder = BagRecorder(bus, clock, tmp_path / "bags")
    for i in range(5):
        clock.set(100.0 + i / 15)
        stamp = Time.from_seconds(clock.now())
        bus.publisher(CAMERA_TOPIC)(Image(Header(stamp, "camera"), frame(i)))
        bus.publisher(POLICY_TOPIC)(drive_msg(stamp, 0.1 * i, 1.0))
        bus.publisher(DRIVE_TOPIC)(drive_msg(stamp, 0.1 * i, 0.5))
        bus.publisher(DIAGNOSTICS_TOPIC)(DiagnosticArray(Header(stamp), (DiagnosticStatus(0, "policy", "ok"),)))
    recorder.close()
    return recorder.path


def test_recording_is_an_mcap_rosbag2_that_rosbags_reads(small_bag):
    assert (small_bag / "metadata.yaml").is_file() and len(list(small_bag.glob("*.mcap"))) == 1
    assert "storage_identifier: mcap" in (small_bag / "metadata.yaml").read_text()
    with AnyReader([small_bag], default_typestore=typestore()) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            CAMERA_TOPIC: "sensor_msgs/msg/Image", POLICY_TOPIC: "ackermann_msgs/msg/AckermannDriveStamped",
            DRIVE_TOPIC: "ackermann_msgs/msg/AckermannDriveStamped",
            DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray"}
        images = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()
                  if c.topic == CAMERA_TOPIC]
    assert [t for t, _ in images] == [round((100.0 + i / 15) * 1e9) for i in range(5)]  # node clock at reception
    for i, (_, img) in enumerate(images):
        assert (img.height, img.width, img.encoding) == (120, 160, "bgr8")
        assert np.array_equal(img.data.reshape(120, 160, 3), frame(i))


def test_bag_source_replays_frames_with_their_recorded_stamps_then_loops(small_bag):
    source = BagSource(small_bag, realtime=False, loop=True)
    source.open()
    got = [source.read() for _ in range(7)]
    source.release()
    stamps = [stamp for _, stamp in got]
    assert stamps[:5] == pytest.approx([100.0 + i / 15 for i in range(5)])
    length = 4 / 15 + 1 / 15  # recorded span plus one frame period
    assert stamps[5:] == pytest.approx([100.0 + length, 100.0 + length + 1 / 15])  # the loop keeps time moving
    assert all(np.array_equal(img, frame(i % 5)) for i, (img, _) in enumerate(got))


def test_a_replay_ends_with_its_recording_unless_asked_to_loop(small_bag):
    source = BagSource(small_bag, realtime=False)
    source.open()
    assert [float(img[0, 0, 0]) for img, _ in (source.read() for _ in range(5))] == [0, 1, 2, 3, 4]
    with pytest.raises(RecordingEnded, match=rf"^bag:{small_bag}: the recording ended after 5 frames "
                                             rf"\(bag:{small_bag}:loop replays it in a loop\)$"):
        source.read()
    source.release()


@pytest.mark.parametrize("suffix, frames", [("", 5), (":loop", 12)])
def test_the_bag_camera_stops_at_the_end_for_good_or_loops_when_asked(small_bag, suffix, frames, caplog):
    """`bag:PATH` as the car's camera: five frames, then a fault that does not clear (no reopening,
    no second pass); `bag:PATH:loop` goes on."""
    camera = open_camera(f"bag:{small_bag}{suffix}", fps=15)
    got = []
    try:
        with caplog.at_level("INFO", logger="racer.camera"):
            while len(got) < 12:
                try:
                    got.append(camera.read()[1])
                except CameraFault as exc:
                    assert str(exc).startswith(f"bag:{small_bag}: the recording ended after 5 frames")
                    break
        assert len(got) == frames and camera.ended.is_set() == (suffix == "")
        if suffix:
            assert "end of the recording, replaying it from the start (loop 2)" in caplog.text
        else:
            assert "the recording ended after 5 frames" in caplog.text
            with pytest.raises(CameraFault, match="the recording ended"):  # at once, and for good
                camera.read()
    finally:
        camera.close()


def test_bag_source_refuses_what_is_not_a_camera_bag(tmp_path, small_bag):
    with pytest.raises(CameraFault, match="not a rosbag2 directory"):
        BagSource(tmp_path).open()
    with pytest.raises(CameraFault, match="no /sim/camera/image_raw messages"):
        BagSource(small_bag, topic="/sim/camera/image_raw").open()
    with pytest.raises(CameraFault, match="not open"):
        BagSource(small_bag).read()


def test_each_recording_gets_its_own_bag_directory(tmp_path):
    first = new_bag_path(tmp_path)
    first.mkdir()
    assert new_bag_path(tmp_path) != first
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        new_bag_path(tmp_path / "file")


def test_recorded_simulated_drive_replays_as_the_camera_to_the_same_commands(tmp_path):
    model = driving_model()
    proc = subprocess.run([sys.executable, "-m", "racer.cli", "car", "--sim", "reinvent_base", "--autostart",
                           "--model", str(model), "--record", str(tmp_path), "--duration", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (bag,) = list(tmp_path.iterdir())
    recorded = recorded_commands(bag)
    assert len(recorded) > 20
    assert replay_policy(bag, model) == recorded  # every frame, every command, bit for bit


def test_record_topics_are_the_drive_and_its_diagnostics():
    assert RECORDED_TOPICS == (CAMERA_TOPIC, POLICY_TOPIC, DRIVE_TOPIC, DIAGNOSTICS_TOPIC)
