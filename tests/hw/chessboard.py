"""A known pinhole camera photographing a chessboard, for testing calibration against ground truth.

Squares are projected with cv2.projectPoints and filled at 4x resolution with sub-pixel
anti-aliased edges, then area-averaged down, so corners land where the true camera would put them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
CAMERA_MATRIX = np.array([[520.0, 0.0, 318.0], [0.0, 515.0, 242.0], [0.0, 0.0, 1.0]])
COLUMNS, ROWS, SQUARE_M = 9, 6, 0.03
SUPERSAMPLE = 4
POSES = (  # rotation vector (rad), board centre in the camera frame (m)
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.7)),
    ((0.4, 0.0, 0.0), (0.0, 0.0, 0.7)),
    ((-0.4, 0.0, 0.1), (0.05, 0.0, 0.75)),
    ((0.0, 0.45, 0.0), (0.0, 0.03, 0.7)),
    ((0.0, -0.45, -0.1), (0.0, 0.0, 0.7)),
    ((0.3, 0.3, 0.2), (-0.05, 0.02, 0.8)),
    ((-0.3, 0.35, 0.0), (0.05, -0.03, 0.65)),
    ((0.35, -0.3, 0.3), (0.0, 0.0, 0.75)),
)


def photograph(rotation: tuple[float, float, float], centre: tuple[float, float, float]) -> np.ndarray:
    """A grey image of the board (white margin, black squares) on a grey background."""
    rotation_matrix, _ = cv2.Rodrigues(np.array(rotation, dtype=np.float64))
    board_centre = np.array([(COLUMNS - 1) * SQUARE_M / 2, (ROWS - 1) * SQUARE_M / 2, 0.0])
    rvec = np.array(rotation, dtype=np.float64)
    tvec = np.array(centre) - rotation_matrix @ board_centre
    image = np.full((HEIGHT * SUPERSAMPLE, WIDTH * SUPERSAMPLE), 100, np.uint8)

    def fill(x0: float, y0: float, x1: float, y1: float, shade: int) -> None:
        corners = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=np.float64)
        pixels, _ = cv2.projectPoints(corners, rvec, tvec, CAMERA_MATRIX, None)
        fine = (pixels.reshape(-1, 2) + 0.5) * SUPERSAMPLE - 0.5
        cv2.fillConvexPoly(image, np.round(fine * 16).astype(np.int32), shade, cv2.LINE_AA, 4)

    fill(-2 * SQUARE_M, -2 * SQUARE_M, (COLUMNS + 1) * SQUARE_M, (ROWS + 1) * SQUARE_M, 255)
    for column in range(-1, COLUMNS):
        for row in range(-1, ROWS):
            if (column + row) % 2 == 0:
                fill(column * SQUARE_M, row * SQUARE_M, (column + 1) * SQUARE_M, (row + 1) * SQUARE_M, 0)
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def photo_session(folder: Path) -> Path:
    """One PNG per pose in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (rotation, centre) in enumerate(POSES):
        cv2.imwrite(str(folder / f"board-{index:02d}.png"), photograph(rotation, centre))
    return folder
