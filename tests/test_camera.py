"""Camera sources: a real video file and a real image folder; V4L2 only through its fault path."""
from __future__ import annotations

import re
import statistics
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from car.camera.capture import ImageFolderSource, open_camera
from car.camera.source import CameraFault

SIZE = (64, 48)


def frame_with(value: int) -> np.ndarray:
    frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    frame[:, :, 0] = value
    return frame


def frame_id(frame: np.ndarray) -> int:
    return round(float(frame[:, :, 0].mean()) / 20)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """Ten frames at 25 fps, frame i with blue = 20 i."""
    path = tmp_path / "lap.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, SIZE)
    for index in range(10):
        writer.write(frame_with(20 * index))
    writer.release()
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, index in (("b.png", 1), ("a.png", 0), ("c.jpg", 2)):
        cv2.imwrite(str(folder / name), frame_with(20 * index))
    (folder / "notes.txt").write_text("not an image")
    return folder


def read_until_fault(camera, limit_s: float = 3.0) -> CameraFault:
    """Read until CameraFault and return it; fail if frames keep coming for `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            camera.read()
        except CameraFault as fault:
            return fault
    raise AssertionError("the source never faulted")


def read_after_recovery(camera, limit_s: float = 3.0) -> np.ndarray:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return camera.read()[0]
        except CameraFault:
            if time.monotonic() > deadline:
                raise


def test_video_file_loops_at_its_frame_rate(video: Path) -> None:
    camera = open_camera(f"file:{video}")
    try:
        reads = [camera.read() for _ in range(14)]
    finally:
        camera.close()
    ids = [frame_id(frame) for frame, _ in reads]
    steps = [(b - a) % 10 for a, b in pairwise(ids)]
    assert set(steps) <= {1, 2} and steps.count(1) >= 10, ids
    assert any(b < a for a, b in pairwise(ids)), "the video did not loop"
    assert reads[0][0].shape == (48, 64, 3)
    intervals = [b[1] - a[1] for a, b in pairwise(reads)]
    assert statistics.median(intervals) == pytest.approx(0.04, rel=0.25)
    assert abs(reads[-1][1] - time.time()) < 1.0


def test_image_folder_plays_images_in_name_order_and_loops(images: Path) -> None:
    # the source itself: the Camera around it hands out the newest frame and may skip one on a loaded machine
    source = ImageFolderSource(str(images), fps=50)
    source.open()
    try:
        ids = [frame_id(source.grab()[0]) for _ in range(5)]
    finally:
        source.release()
    assert ids == [0, 1, 2, 0, 1]
    camera = open_camera(f"images:{images}", fps=50)
    try:
        ids = [frame_id(camera.read()[0]) for _ in range(8)]
    finally:
        camera.close()
    assert set(ids) <= {0, 1, 2} and len(set(ids)) > 1, ids  # the folder's images, played on


def test_image_folder_that_empties_faults_then_recovers(images: Path, tmp_path: Path) -> None:
    camera = open_camera(f"images:{images}", fps=50)
    aside = tmp_path / "aside"
    aside.mkdir()
    try:
        camera.read()
        for image in images.glob("*.*g"):
            image.rename(aside / image.name)
        # the source's reason, or staleness when a loaded machine starved the grab thread for 3 periods
        reasons = r"no images \(.*\)|cannot read \S+|no frame for 60 ms"
        assert re.fullmatch(rf"images:{images}: ({reasons})", str(read_until_fault(camera)))
        for image in aside.iterdir():
            image.rename(images / image.name)
        assert read_after_recovery(camera).shape == (48, 64, 3)
    finally:
        camera.close()


def test_deleted_video_faults_then_recovers(video: Path, tmp_path: Path) -> None:
    camera = open_camera(f"file:{video}")
    kept = tmp_path / "kept.avi"
    try:
        camera.read()
        video.rename(kept)
        # the source's reason, or staleness when a loaded machine starved the grab thread for 3 periods
        assert str(read_until_fault(camera)) in {f"file:{video}: no such file", f"file:{video}: no frame for 120 ms"}
        kept.rename(video)
        assert frame_id(read_after_recovery(camera)) in range(10)
    finally:
        camera.close()


def test_unreadable_image_is_a_fault_not_an_empty_frame(images: Path) -> None:
    for image in images.glob("*.*g"):
        image.unlink()
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    camera = open_camera(f"images:{images}", fps=50)
    try:
        with pytest.raises(CameraFault, match=r"cannot read broken\.png"):
            camera.read()
    finally:
        camera.close()


def test_closed_camera_faults(images: Path) -> None:
    camera = open_camera(f"images:{images}", fps=50)
    camera.close()
    with pytest.raises(CameraFault, match=r"closed$"):
        camera.read()


def test_missing_v4l2_device_is_a_camera_fault(tmp_path: Path) -> None:
    device = tmp_path / "video9"
    with pytest.raises(CameraFault, match=rf"^v4l2:{device}: {device} does not exist$"):
        open_camera(f"v4l2:{device}")


def test_a_file_that_is_not_a_v4l2_device_is_a_camera_fault(tmp_path: Path) -> None:
    device = tmp_path / "video0"
    device.write_text("")
    with pytest.raises(CameraFault, match=r"cannot open .*video0 as a V4L2 capture device$"):
        open_camera(f"v4l2:{device}")


@pytest.mark.parametrize(("spec", "message"), [
    ("sim", r"^camera spec 'sim' is the simulator's camera, which the caller provides"),
    ("usb:0", r"^unknown camera spec 'usb:0': expected v4l2:/dev/videoN, file:VIDEO, images:DIR or bag:PATH\[:loop\]$"),
    ("/dev/video0", r"^unknown camera spec '/dev/video0'"),
    ("file:", r"^camera spec 'file:': missing the path after 'file:'$"),
    ("v4l2:", r"^camera spec 'v4l2:': missing the path"),
])
def test_bad_specs_are_value_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_camera(spec)


def test_bad_sizes_are_value_errors(images: Path) -> None:
    with pytest.raises(ValueError, match=r"^camera size 0x480 at 15\.0 fps: all must be positive$"):
        open_camera(f"images:{images}", width=0)


@pytest.mark.parametrize(("spec", "message"), [
    ("file:{tmp}/none.avi", r"^file:.*none\.avi: no such file$"),
    ("file:{tmp}/junk.avi", r"^file:.*junk\.avi: not a video OpenCV can read$"),
    ("images:{tmp}/none", r"^images:.*none: no such directory$"),
    ("images:{tmp}", r"^images:.*: no images \("),
])
def test_missing_sources_are_camera_faults_at_open(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "junk.avi").write_bytes(b"RIFF nothing here")
    with pytest.raises(CameraFault, match=message):
        open_camera(spec.format(tmp=tmp_path))
