"""Camera view of the track from the car: a pinhole camera looking at a painted ground plane.

Speed comes from doing the geometry once. Each pixel's ray is intersected with the ground in the
car frame at construction; a frame is then one affine transform of those points by the car pose
and one `cv2.remap` into an atlas that holds the top-down track texture at several mip levels
(each pixel samples the level matching its ground footprint, so distant paint does not alias)
plus the background seen above the horizon.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .track import Track

Colour = tuple[int, int, int]
_SUBPIXEL_BITS = 4


@dataclass(frozen=True)
class CameraParams:
    """The camera's mounting on the car and its lens; lengths in metres, angles in degrees."""

    height_m: float = 0.10
    pitch_deg: float = 18.0
    hfov_deg: float = 120.0
    forward_m: float = 0.08
    max_range_m: float = 12.0

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 pinhole matrix K for square pixels filling `hfov_deg` across the image width."""
        fx = 0.5 * width / math.tan(math.radians(self.hfov_deg) / 2.0)
        return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SceneParams:
    """How the world is painted: colours (BGR, defaults sampled from DeepRacer simulator frames),
    paint sizes in metres, and the texture's resolution."""

    floor_bgr: Colour = (104, 138, 97)
    track_bgr: Colour = (71, 54, 40)
    border_bgr: Colour = (212, 217, 216)
    centre_bgr: Colour = (0, 130, 218)
    background_top_bgr: Colour = (22, 18, 10)
    background_bottom_bgr: Colour = (48, 42, 28)
    border_line_m: float = 0.05
    centre_line_m: float = 0.04
    dash_m: float = 0.12
    gap_m: float = 0.12
    metres_per_px: float = 0.01
    margin_m: float = 1.0
    mip_levels: int = 6


@dataclass(frozen=True)
class TrackTexture:
    """Top-down picture of a track; pixel (col, row) is centred on world (x0 + col*m, y0 - row*m)."""

    image: np.ndarray
    x0: float
    y0: float
    metres_per_px: float


def draw_track_texture(track: Track, scene: SceneParams) -> TrackTexture:
    """Paint the floor, the track surface, white borders and the dashed centre line from above."""
    m = scene.metres_per_px
    corners = np.concatenate([track.inner, track.outer])
    x0 = float(corners[:, 0].min()) - scene.margin_m
    y0 = float(corners[:, 1].max()) + scene.margin_m
    cols = int(math.ceil((corners[:, 0].max() + scene.margin_m - x0) / m)) + 1
    rows = int(math.ceil((y0 - corners[:, 1].min() + scene.margin_m) / m)) + 1
    image = np.empty((rows, cols, 3), np.uint8)
    image[:] = scene.floor_bgr

    def pixels(points: np.ndarray) -> np.ndarray:
        scaled = np.stack([(points[:, 0] - x0) / m, (y0 - points[:, 1]) / m], axis=1)
        return np.round(scaled * (1 << _SUBPIXEL_BITS)).astype(np.int32)

    def line(points: np.ndarray, closed: bool, colour: Colour, width_m: float) -> None:
        # OpenCV's anti-aliased strokes come out about 1.7 px wider than the thickness asked for.
        thickness = max(1, round(width_m / m) - 2)
        cv2.polylines(image, [pixels(points)], closed, colour, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)

    cv2.fillPoly(image, [pixels(track.outline)], scene.track_bgr, cv2.LINE_8, _SUBPIXEL_BITS)
    if track.hole is not None:
        cv2.fillPoly(image, [pixels(track.hole)], scene.floor_bgr, cv2.LINE_8, _SUBPIXEL_BITS)
    line(track.inner, track.closed, scene.border_bgr, scene.border_line_m)
    line(track.outer, track.closed, scene.border_bgr, scene.border_line_m)
    period = scene.dash_m + scene.gap_m
    for start in np.arange(0.0, track.length, period):
        s = np.linspace(start, min(start + scene.dash_m, track.length), max(2, int(scene.dash_m / m)))
        x, y, _ = track.point_at(s)
        line(np.stack([x, y], axis=1), False, scene.centre_bgr, scene.centre_line_m)
    return TrackTexture(image, x0, y0, m)


def ground_rays(camera: CameraParams, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: where its ray meets the ground in the car frame (x forward, y left, metres; inf
    where it misses the ground within range), and the pixel's ground footprint (metres)."""
    k = camera.intrinsics(width, height)
    pitch = math.radians(camera.pitch_deg)
    cos_p, sin_p = math.cos(pitch), math.sin(pitch)

    def hit(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        xn = (u - k[0, 2]) / k[0, 0]
        yn = (v - k[1, 2]) / k[1, 1]
        down = sin_p + cos_p * yn
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down > 1e-9, camera.height_m / down, np.inf)
            ahead, left = t * (cos_p - sin_p * yn), -t * xn
            point = np.stack([camera.forward_m + ahead, left], axis=-1)
        return np.where((np.hypot(ahead, left) <= camera.max_range_m)[..., None], point, np.inf)

    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    here = hit(u, v)
    with np.errstate(invalid="ignore"):
        du = np.linalg.norm(hit(u + 1.0, v) - here, axis=-1)
        dv = np.linalg.norm(hit(u, v + 1.0) - here, axis=-1)
        footprint = np.sqrt(du * dv)
    footprint[np.isnan(footprint)] = np.inf
    return here, footprint


class Renderer:
    """Renders BGR frames of `track` as seen by the car's camera at a given pose."""

    def __init__(
        self,
        track: Track,
        width: int = 160,
        height: int = 120,
        camera: CameraParams | None = None,
        scene: SceneParams | None = None,
    ) -> None:
        self.track = track
        self.width, self.height = width, height
        self.camera = camera or CameraParams()
        self.scene = scene or SceneParams()
        texture = draw_track_texture(track, self.scene)
        self._world_to_texel = (texture.x0, texture.y0, texture.metres_per_px)
        levels = [texture.image]
        for _ in range(1, self.scene.mip_levels):
            levels.append(cv2.pyrDown(levels[-1]))
        self._atlas, origins, background_origin = _pack_atlas(levels, _background(self.scene, width, height))

        points, footprint = ground_rays(self.camera, width, height)
        ground = np.isfinite(points[..., 0])
        level = np.log2(np.maximum(footprint / texture.metres_per_px, 1.0))
        level = np.clip(np.round(np.where(ground, level, 0.0)), 0, len(levels) - 1).astype(int)

        # A level-k texel coordinate is (level-0 coordinate + 0.5) / 2**k - 0.5, shifted to the
        # level's place in the atlas and clamped inside it (its margin is floor colour).
        scale = np.where(ground, 0.5**level, 0.0)
        origin = np.asarray(origins, np.float64)[level]
        size = np.asarray([lv.shape[1::-1] for lv in levels], np.float64)[level]
        offset = origin + (0.5 * scale - 0.5)[..., None]
        lo, hi = origin, origin + size - 1.0
        v, u = np.mgrid[0:height, 0:width]
        sky = np.stack([background_origin[0] + u, background_origin[1] + v], axis=-1).astype(np.float64)
        offset[~ground], lo[~ground], hi[~ground] = sky[~ground], sky[~ground], sky[~ground]
        points[~ground] = 0.0

        self._points = points.astype(np.float32)
        self._scale = np.repeat(scale[..., None], 2, axis=-1).astype(np.float32)
        self._offset = offset.astype(np.float32)
        self._lo = lo.astype(np.float32)
        self._hi = hi.astype(np.float32)
        self._map = np.empty_like(self._points)

    def render(self, x: float, y: float, yaw: float, out: np.ndarray | None = None) -> np.ndarray:
        """The frame seen from car pose (x, y, yaw); pass `out` (H, W, 3) uint8 to reuse a buffer."""
        x0, y0, m = self._world_to_texel
        c, s = math.cos(yaw) / m, math.sin(yaw) / m
        car_to_texel = np.array([[c, -s, (x - x0) / m], [-s, -c, (y0 - y) / m]])
        cv2.transform(self._points, car_to_texel, dst=self._map)
        np.multiply(self._map, self._scale, out=self._map)
        np.add(self._map, self._offset, out=self._map)
        np.maximum(self._map, self._lo, out=self._map)
        np.minimum(self._map, self._hi, out=self._map)
        return cv2.remap(self._atlas, self._map, None, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REPLICATE)


def _background(scene: SceneParams, width: int, height: int) -> np.ndarray:
    """What lies beyond the ground in range: the room's walls, darker towards the top."""
    blend = np.linspace(0.0, 1.0, height)[:, None]
    column = (1.0 - blend) * np.array(scene.background_top_bgr) + blend * np.array(scene.background_bottom_bgr)
    return np.repeat(np.round(column).astype(np.uint8)[:, None, :], width, axis=1)


def _pack_atlas(
    levels: list[np.ndarray], background: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """Level 0 on the left; the smaller levels and the background stacked in a column beside it."""
    column = levels[1:] + [background]
    width = levels[0].shape[1] + max(img.shape[1] for img in column)
    height = max(levels[0].shape[0], sum(img.shape[0] for img in column))
    atlas = np.zeros((height, width, 3), np.uint8)
    atlas[: levels[0].shape[0], : levels[0].shape[1]] = levels[0]
    origins = [(0, 0)]
    x, y = levels[0].shape[1], 0
    for img in column:
        atlas[y : y + img.shape[0], x : x + img.shape[1]] = img
        origins.append((x, y))
        y += img.shape[0]
    return atlas, origins[:-1], origins[-1]
