"""Chessboard calibration against images rendered by a known camera, and the camera_info YAML."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from calibration.camera import (
    CameraCalibrationError,
    CameraInfo,
    calibrate_images,
    load_camera_info,
    save_camera_info,
    to_yaml,
)
from hw.chessboard import CAMERA_MATRIX, COLUMNS, HEIGHT, ROWS, SQUARE_M, WIDTH, photo_session


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = photo_session(tmp_path_factory.mktemp("calibration") / "photos")
    cv2.imwrite(str(folder / "wall.png"), np.full((HEIGHT, WIDTH), 128, np.uint8))
    (folder / "README.txt").write_text("not an image")
    return folder


def test_recovers_the_known_focal_length_and_principal_point(photos: Path) -> None:
    result = calibrate_images(photos, COLUMNS, ROWS, SQUARE_M, name="front")
    matrix = result.info.camera_matrix
    for (row, col) in ((0, 0), (1, 1), (0, 2), (1, 2)):
        assert matrix[row, col] == pytest.approx(CAMERA_MATRIX[row, col], rel=0.02)
    assert (result.info.width, result.info.height) == (WIDTH, HEIGHT)
    assert result.rms_px < 0.5
    assert result.skipped == ["wall.png"]
    assert len(result.used) == 8
    assert result.info.projection.shape == (3, 4)
    assert result.info.projection[0, 0] == pytest.approx(CAMERA_MATRIX[0, 0], rel=0.05)


def test_camera_info_yaml_has_the_ros_layout_and_round_trips(photos: Path, tmp_path: Path) -> None:
    info = calibrate_images(photos, COLUMNS, ROWS, SQUARE_M, name="front").info
    path = tmp_path / "camera_info.yaml"
    save_camera_info(info, path)
    document = yaml.safe_load(path.read_text())
    assert list(document) == ["image_width", "image_height", "camera_name", "camera_matrix", "distortion_model",
                              "distortion_coefficients", "rectification_matrix", "projection_matrix"]
    assert document["distortion_model"] == "plumb_bob"
    assert {key: (document[key]["rows"], document[key]["cols"], len(document[key]["data"])) for key in (
        "camera_matrix", "distortion_coefficients", "rectification_matrix", "projection_matrix")} == {
        "camera_matrix": (3, 3, 9), "distortion_coefficients": (1, 5, 5),
        "rectification_matrix": (3, 3, 9), "projection_matrix": (3, 4, 12)}
    loaded = load_camera_info(path)
    assert (loaded.width, loaded.height, loaded.name) == (WIDTH, HEIGHT, "front")
    for field in ("camera_matrix", "distortion", "rectification", "projection"):
        np.testing.assert_allclose(getattr(loaded, field), getattr(info, field))


def test_too_few_boards_is_an_error(tmp_path: Path) -> None:
    for index in range(4):
        cv2.imwrite(str(tmp_path / f"blank-{index}.png"), np.full((HEIGHT, WIDTH), 128, np.uint8))
    with pytest.raises(CameraCalibrationError, match=r"a 9x6 chessboard was found in 0 of 4 images; need at least 3$"):
        calibrate_images(tmp_path)


def test_wrong_board_size_finds_nothing(photos: Path) -> None:
    with pytest.raises(CameraCalibrationError, match=r"a 7x5 chessboard was found in 0 of 9 images"):
        calibrate_images(photos, 7, 5, SQUARE_M)


@pytest.mark.parametrize(("columns", "rows", "square", "message"), [
    (1, 6, 0.03, r"^board 1x6 with 0\.03 m squares: need at least 2x2 inner corners and a positive square size$"),
    (9, 6, 0.0, r"^board 9x6 with 0\.0 m squares"),
])
def test_bad_board_is_an_error(tmp_path: Path, columns: int, rows: int, square: float, message: str) -> None:
    with pytest.raises(CameraCalibrationError, match=message):
        calibrate_images(tmp_path, columns, rows, square)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CameraCalibrationError, match=r"nothing: not a directory$"):
        calibrate_images(tmp_path / "nothing")


def good_yaml() -> dict:
    info = CameraInfo(width=640, height=480, camera_matrix=CAMERA_MATRIX, distortion=np.zeros(5))
    return yaml.safe_load(to_yaml(info))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("camera_matrix"), r"camera_matrix: missing or without a data list$"),
    (lambda d: d["projection_matrix"].update(cols=3), r"projection_matrix: expected 3x4 values$"),
    (lambda d: d["distortion_coefficients"]["data"].pop(), r"distortion_coefficients: expected 1x5 values$"),
    (lambda d: d["camera_matrix"]["data"].__setitem__(0, "f"), r"camera_matrix: data must be numbers$"),
    (lambda d: d.update(image_width=-1), r"image_width: expected a positive integer$"),
    (lambda d: d.update(distortion_model="equidistant"), r"distortion_model: only plumb_bob is supported$"),
])
def test_bad_camera_info_names_the_key(tmp_path: Path, change, message: str) -> None:
    document = good_yaml()
    change(document)
    path = tmp_path / "camera_info.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CameraCalibrationError, match=message):
        load_camera_info(path)


def test_unreadable_camera_info_files(tmp_path: Path) -> None:
    with pytest.raises(CameraCalibrationError, match=r"none\.yaml: cannot read: No such file or directory$"):
        load_camera_info(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("camera_matrix: [1, 2\n")
    with pytest.raises(CameraCalibrationError, match=r"broken\.yaml: not valid YAML"):
        load_camera_info(broken)
    broken.write_text("- just a list\n")
    with pytest.raises(CameraCalibrationError, match=r"broken\.yaml: not a camera_info mapping$"):
        load_camera_info(broken)
