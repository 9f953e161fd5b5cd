"""Chessboard calibration of the car camera, stored as a ROS camera_info YAML.

The YAML layout is the one ROS camera_calibration_parsers reads and writes, so the file works
with image_proc and camera_info_manager on the car as well as with this project.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from calibration.files import replace_atomically
from car.yamlfile import read_yaml

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MIN_VIEWS = 3


class CameraCalibrationError(ValueError):
    """Not enough usable chessboard views, or a camera_info file that is not one."""


@dataclass
class CameraInfo:
    """Intrinsics in ROS sensor_msgs/CameraInfo terms (plumb_bob distortion)."""

    width: int
    height: int
    camera_matrix: np.ndarray
    distortion: np.ndarray
    name: str = "camera"
    rectification: np.ndarray = field(default_factory=lambda: np.eye(3))
    projection: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.projection is None:
            self.projection = np.hstack([self.camera_matrix, np.zeros((3, 1))])


@dataclass
class CalibrationResult:
    """The calibration and how well it fits: RMS reprojection error in pixels, views used and skipped."""

    info: CameraInfo
    rms_px: float
    used: list[str]
    skipped: list[str]


def board_points(columns: int, rows: int, square_m: float) -> np.ndarray:
    """Inner-corner positions on the board plane (z = 0), row by row as findChessboardCorners orders them."""
    grid = np.mgrid[0:columns, 0:rows].T.reshape(-1, 2)
    return np.hstack([grid * square_m, np.zeros((len(grid), 1))]).astype(np.float32)


def calibrate_images(folder: str | os.PathLike[str], columns: int = 9, rows: int = 6,
                     square_m: float = 0.025, name: str = "camera") -> CalibrationResult:
    """Find a chessboard of columns x rows inner corners in each image and solve for the intrinsics."""
    if columns < 2 or rows < 2 or not square_m > 0:
        raise CameraCalibrationError(f"board {columns}x{rows} with {square_m} m squares: need at least "
                                     "2x2 inner corners and a positive square size")
    if not Path(folder).is_dir():
        raise CameraCalibrationError(f"{folder}: not a directory")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    template = board_points(columns, rows, square_m)
    object_points, image_points, used, skipped = [], [], [], []
    size: tuple[int, int] | None = None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    for path in paths:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None or (size is not None and grey.shape[::-1] != size):
            skipped.append(path.name)
            continue
        found, corners = cv2.findChessboardCorners(
            grey, (columns, rows), flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if not found:
            skipped.append(path.name)
            continue
        size = grey.shape[::-1]
        object_points.append(template)
        image_points.append(cv2.cornerSubPix(grey, corners, (5, 5), (-1, -1), criteria))
        used.append(path.name)
    if size is None or len(used) < MIN_VIEWS:
        raise CameraCalibrationError(
            f"{folder}: a {columns}x{rows} chessboard was found in {len(used)} of {len(paths)} images; "
            f"need at least {MIN_VIEWS}")
    rms, matrix, distortion, _, _ = cv2.calibrateCamera(object_points, image_points, size, None, None)
    projection_matrix, _ = cv2.getOptimalNewCameraMatrix(matrix, distortion, size, 0.0)
    info = CameraInfo(width=size[0], height=size[1], camera_matrix=matrix, distortion=distortion.ravel()[:5],
                      name=name, projection=np.hstack([projection_matrix, np.zeros((3, 1))]))
    return CalibrationResult(info=info, rms_px=float(rms), used=used, skipped=skipped)


def _matrix(values: np.ndarray, rows: int, cols: int) -> dict[str, Any]:
    return {"rows": rows, "cols": cols, "data": [float(v) for v in np.asarray(values).ravel()]}


def to_yaml(info: CameraInfo) -> str:
    document = {
        "image_width": int(info.width),
        "image_height": int(info.height),
        "camera_name": info.name,
        "camera_matrix": _matrix(info.camera_matrix, 3, 3),
        "distortion_model": "plumb_bob",
        "distortion_coefficients": _matrix(info.distortion, 1, 5),
        "rectification_matrix": _matrix(info.rectification, 3, 3),
        "projection_matrix": _matrix(info.projection, 3, 4),
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None)


def save_camera_info(info: CameraInfo, path: str | os.PathLike[str]) -> None:
    replace_atomically(path, to_yaml(info).encode())


def _read_matrix(document: dict[str, Any], key: str, rows: int, cols: int, path: str) -> np.ndarray:
    entry = document.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), list):
        raise CameraCalibrationError(f"{path}: {key}: missing or without a data list")
    if (entry.get("rows"), entry.get("cols")) != (rows, cols) or len(entry["data"]) != rows * cols:
        raise CameraCalibrationError(f"{path}: {key}: expected {rows}x{cols} values")
    try:
        return np.array(entry["data"], dtype=np.float64).reshape(rows, cols)
    except (TypeError, ValueError):
        raise CameraCalibrationError(f"{path}: {key}: data must be numbers") from None


def load_camera_info(path: str | os.PathLike[str]) -> CameraInfo:
    """Read a ROS camera_info YAML (plumb_bob); errors name the file and the key."""
    name = str(path)
    document = read_yaml(path, CameraCalibrationError)
    if not isinstance(document, dict):
        raise CameraCalibrationError(f"{name}: not a camera_info mapping")
    for key in ("image_width", "image_height"):
        if not isinstance(document.get(key), int) or document[key] <= 0:
            raise CameraCalibrationError(f"{name}: {key}: expected a positive integer")
    if document.get("distortion_model", "plumb_bob") != "plumb_bob":
        raise CameraCalibrationError(f"{name}: distortion_model: only plumb_bob is supported")
    return CameraInfo(
        width=document["image_width"],
        height=document["image_height"],
        camera_matrix=_read_matrix(document, "camera_matrix", 3, 3, name),
        distortion=_read_matrix(document, "distortion_coefficients", 1, 5, name).ravel(),
        name=str(document.get("camera_name", "camera")),
        rectification=_read_matrix(document, "rectification_matrix", 3, 3, name),
        projection=_read_matrix(document, "projection_matrix", 3, 4, name),
    )
