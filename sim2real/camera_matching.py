"""Camera matching: a calibrated real camera (ROS camera_info YAML) reproduced in the simulator,
so the policy trains on the lens the car has, not on an ideal one."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from calibration.camera import CameraInfo, load_camera_info
from sim2real.sim.render import CameraParams


def camera_from_info(info: CameraInfo | str | Path, base: CameraParams | None = None) -> CameraParams:
    """Intrinsics and plumb_bob distortion from the calibration (a pinhole projection bent by
    plumb_bob, as OpenCV measures it), the mounting (height, pitch, roll) from `base`. Render at the
    calibration's aspect ratio: the focal length scales with width."""
    if not isinstance(info, CameraInfo):
        info = load_camera_info(info)
    k = info.camera_matrix
    fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    if fx <= 0 or fy <= 0:
        raise ValueError(f"camera_info {info.name!r}: focal lengths must be positive, got fx={fx}, fy={fy}")
    w, h = info.width, info.height
    return replace(base or CameraParams(),
                   hfov_deg=math.degrees(2.0 * math.atan(0.5 * w / fx)),
                   aspect=fy / fx,
                   principal_offset=((cx - (w - 1) / 2.0) / w, (cy - (h - 1) / 2.0) / h),
                   distortion=tuple(float(d) for d in info.distortion), fisheye=0.0)
