"""Segmentation labels the simulator gives for free: which pixels of the camera's view are road,
painted line or background, rendered from the car's pose through the episode's own camera.

The label view is the ordinary `Renderer` on a label world: the same track, paint widths, dashes
and walls, painted in one pure colour per class (no light, grain, wear, spots, shadows or
distractors: a label says what is there, not what it looks like), then each pixel is given the
class that covers it (`LabelCamera`): paint covering a good part of a label pixel makes it a line, so
thin distant lines stay visible. Lens, mounting and roll are the domain's, so a label lies on its
frame pixel for pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .render import CameraParams, Renderer, SceneParams
from .track import Track

CLASSES = ("background", "road", "line")
# Class colours in the label world (BGR): each class lights one channel.
_BACKGROUND, _ROAD, _LINE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def label_scene(scene: SceneParams) -> SceneParams:
    """`scene`'s geometry (paint widths, dashes, field, walls) in the class colours, untidiness off."""
    return SceneParams(floor_bgr=_BACKGROUND, track_bgr=_ROAD, border_bgr=_LINE, centre_bgr=_LINE,
                       wall_bgr=_BACKGROUND, wall_shade_bgr=_BACKGROUND, sky_bgr=_BACKGROUND,
                       border_line_m=scene.border_line_m, centre_line_m=scene.centre_line_m, dash_m=scene.dash_m,
                       gap_m=scene.gap_m, field_margin_m=scene.field_margin_m, wall_height_m=scene.wall_height_m,
                       metres_per_px=scene.metres_per_px, margin_m=scene.margin_m, mip_levels=scene.mip_levels)


# A label pixel is a line when paint covers at least this fraction of it: a thin distant line stays
# visible to the policy instead of blending into the road.
LINE_COVER = 0.2


@dataclass
class LabelCamera:
    """Class maps (H, W) uint8, indices into `CLASSES`, at `width` x `height` (then rows
    [crop_top, height) kept), for a track seen through a camera in a scene. The label world is
    rendered `supersample` times finer and each label pixel takes its block's cover: line where
    paint covers `LINE_COVER` of it, else the larger of road and background. The label renderer is
    rebuilt only when the camera or the paint changes (a new domain)."""

    track: Track
    width: int
    height: int
    crop_top: int = 0
    supersample: int = 4

    def __post_init__(self) -> None:
        self._key: tuple[CameraParams, SceneParams] | None = None
        self._renderer: Renderer | None = None

    def render(self, camera: CameraParams, scene: SceneParams, x: float, y: float, yaw: float) -> np.ndarray:
        """The class map seen from car pose (x, y, yaw) through `camera` in `scene`."""
        key = (camera, label_scene(scene))
        k = self.supersample
        if key != self._key:
            self._key = key
            self._renderer = Renderer(self.track, self.width * k, self.height * k, camera, key[1])
        assert self._renderer is not None  # made above on the first call
        fine = self._renderer.render(x, y, yaw)[self.crop_top * k:]
        cover = cv2.resize(fine, (self.width, self.height - self.crop_top), interpolation=cv2.INTER_AREA)
        classes = np.argmax(cover[..., :2], axis=2).astype(np.uint8)
        classes[cover[..., 2] >= LINE_COVER * 255] = CLASSES.index("line")
        return classes
