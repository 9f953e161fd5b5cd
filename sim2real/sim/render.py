"""Camera view of the track from the car: a pinhole camera looking at a painted ground plane.

Speed comes from doing the geometry once. Each pixel's ray is intersected with the ground in the
car frame at construction; a frame is then one affine transform of those points by the car pose
and one `cv2.remap` into an atlas that holds the top-down track texture at several mip levels
(each pixel samples the level matching its ground footprint, so distant paint does not alias)
plus the background seen above the horizon.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .track import Track

Colour = tuple[int, int, int]
_SUBPIXEL_BITS = 4


@dataclass(frozen=True)
class CameraParams:
    """The camera's mounting on the car and its lens; lengths in metres, angles in degrees.

    The lens is a pinhole filling `hfov_deg` across the image width, optionally with ROS plumb_bob
    `distortion` (k1, k2, p1, p2, k3, in normalised coordinates). `aspect` (fy / fx) and
    `principal_offset` (cx, cy from the image centre, as fractions of width and height) let a
    calibrated camera be reproduced at any render size. Positive `roll_deg` leans the camera to
    the right (clockwise seen from behind), so the horizon rises on the right of the image.
    """

    height_m: float = 0.10
    pitch_deg: float = 18.0
    hfov_deg: float = 120.0
    forward_m: float = 0.08
    max_range_m: float = 12.0
    roll_deg: float = 0.0
    aspect: float = 1.0
    principal_offset: tuple[float, float] = (0.0, 0.0)
    distortion: tuple[float, ...] = ()

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 pinhole matrix K for `hfov_deg` across the image width at this render size."""
        fx = 0.5 * width / math.tan(math.radians(self.hfov_deg) / 2.0)
        cx = (width - 1) / 2.0 + self.principal_offset[0] * width
        cy = (height - 1) / 2.0 + self.principal_offset[1] * height
        return np.array([[fx, 0.0, cx], [0.0, fx * self.aspect, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SceneParams:
    """How the world is painted: colours (BGR, defaults sampled from DeepRacer simulator frames),
    paint sizes in metres, and the texture's resolution.

    The remaining fields give a real room's untidiness, all off by default: `texture_noise` grain
    and blotches on floor and track (grey levels, std), `line_wear` (fraction of paint worn off),
    `light` (global illumination gain), `light_gradient` (relative light change from the middle
    of the room to its edge), `light_spots` pools of light brightening the floor by up to
    `spot_gain`, `shadows` soft shadows blocking `shadow_depth` of the light, `distractors`
    (objects lying on the floor, on or near the track) and `background_clutter` (shapes against
    the walls). `seed` says where they fall.
    """

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
    texture_noise: float = 0.0
    line_wear: float = 0.0
    light: float = 1.0
    light_gradient: float = 0.0
    light_spots: int = 0
    spot_gain: float = 0.4
    shadows: int = 0
    shadow_depth: float = 0.4
    distractors: int = 0
    background_clutter: int = 0
    seed: int = 0


@dataclass(frozen=True)
class TrackTexture:
    """Top-down picture of a track; pixel (col, row) is centred on world (x0 + col*m, y0 - row*m)."""

    image: np.ndarray
    x0: float
    y0: float
    metres_per_px: float


def draw_track_texture(track: Track, scene: SceneParams) -> TrackTexture:
    """Paint the floor, the track surface, white borders and the dashed centre line from above,
    then the room's untidiness and light (see `SceneParams`)."""
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
    grain, clutter, wear, light = _streams(scene.seed, 4)
    if scene.texture_noise > 0.0:
        image = _add_grain(image, grain, scene.texture_noise)
    for _ in range(scene.distractors):
        _draw_distractor(image, pixels, track, clutter)
    unpainted = image.copy() if scene.line_wear > 0.0 else None
    line(track.inner, track.closed, scene.border_bgr, scene.border_line_m)
    line(track.outer, track.closed, scene.border_bgr, scene.border_line_m)
    period = scene.dash_m + scene.gap_m
    for start in np.arange(0.0, track.length, period):
        s = np.linspace(start, min(start + scene.dash_m, track.length), max(2, int(scene.dash_m / m)))
        x, y, _ = track.point_at(s)
        line(np.stack([x, y], axis=1), False, scene.centre_bgr, scene.centre_line_m)
    if unpainted is not None:
        worn = _smooth_noise(wear, image.shape[:2], 6)
        worn = worn < np.quantile(worn[::4, ::4], scene.line_wear)
        image[worn] = unpainted[worn]
    texture = TrackTexture(image, x0, y0, m)
    if scene.light != 1.0 or scene.light_gradient or scene.light_spots or scene.shadows:
        image = _shade(image, _light_map(texture, track, scene, light))
    return TrackTexture(image, x0, y0, m)


def _streams(seed: int, count: int) -> list[np.random.Generator]:
    """Independent random streams, so turning one effect on does not move the others."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(count)]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: int) -> np.ndarray:
    """Blotchy noise in 0..1 varying over about `cell_px` pixels."""
    rows, cols = shape
    coarse = rng.random((rows // cell_px + 2, cols // cell_px + 2), dtype=np.float32)
    return cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)


def _add_grain(image: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Carpet or concrete: fine per-texel grain (a tiled 1.28 m patch) plus blotches a decimetre
    or so across."""
    rows, cols = image.shape[:2]
    patch = rng.standard_normal((128, 128), dtype=np.float32)
    fine = np.tile(patch, (rows // 128 + 1, cols // 128 + 1))[:rows, :cols]
    blotch = (_smooth_noise(rng, (rows, cols), 12) - 0.5) * 3.4
    grain = np.round(amplitude * 0.7 * (fine + blotch)).astype(np.int16)
    return cv2.add(image, cv2.merge([grain] * 3), dtype=cv2.CV_8U)


def _near_track(track: Track, rng: np.random.Generator, spread_m: float) -> tuple[float, float]:
    """A random floor point within `spread_m` of the track's borders (or on the track)."""
    x, y, heading = track.point_at(rng.uniform(0.0, track.length))
    lateral = rng.uniform(-1.0, 1.0) * (float(track.half_width.mean()) + spread_m)
    return float(x - lateral * math.sin(heading)), float(y + lateral * math.cos(heading))


def _draw_distractor(image: np.ndarray, pixels: Callable[[np.ndarray], np.ndarray], track: Track,
                     rng: np.random.Generator) -> None:
    """A sheet of paper, a strip of tape or a leaf: a coloured rotated rectangle on the floor."""
    centre = _near_track(track, rng, 1.0)
    size = (rng.uniform(0.05, 0.35), rng.uniform(0.02, 0.25))
    corners = cv2.boxPoints((centre, size, float(rng.uniform(0.0, 180.0))))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    cv2.fillPoly(image, [pixels(corners)], colour, cv2.LINE_AA, _SUBPIXEL_BITS)


def _light_map(texture: TrackTexture, track: Track, scene: SceneParams, rng: np.random.Generator) -> np.ndarray:
    """Illumination gain over the floor: global light, a gradient across the room, pools of light
    and soft shadows, worked out on an 8 cm grid and smoothly enlarged."""
    cell = 8
    rows, cols = texture.image.shape[:2]
    size_m = cell * texture.metres_per_px
    grid_y, grid_x = np.mgrid[0 : rows // cell + 1, 0 : cols // cell + 1].astype(np.float32)
    x = texture.x0 + grid_x * size_m
    y = texture.y0 - grid_y * size_m
    direction = rng.uniform(0.0, 2.0 * math.pi)
    along = (x - x.mean()) * math.cos(direction) + (y - y.mean()) * math.sin(direction)
    gain = 1.0 + scene.light_gradient * along / max(float(np.abs(along).max()), 1e-6)
    for _ in range(scene.light_spots):
        cx, cy = _near_track(track, rng, 1.0)
        sigma = rng.uniform(0.3, 0.9)
        gain += scene.spot_gain * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma**2))
    if scene.shadows:
        shade = np.zeros(x.shape, np.float32)
        for _ in range(scene.shadows):
            cx, cy = _near_track(track, rng, 1.0)
            angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, int(rng.integers(4, 7))))
            radii = rng.uniform(0.2, 1.0, len(angles))
            polygon = np.stack([(cx + radii * np.cos(angles) - texture.x0) / size_m,
                                (texture.y0 - cy - radii * np.sin(angles)) / size_m], axis=1)
            cv2.fillPoly(shade, [np.round(polygon).astype(np.int32)], 1.0)
        gain *= 1.0 - scene.shadow_depth * cv2.GaussianBlur(shade, (5, 5), 0)
    gain = np.maximum(gain * scene.light, 0.0).astype(np.float32)
    return cv2.resize(gain, (cols, rows), interpolation=cv2.INTER_LINEAR)


def _shade(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The image lit by a per-pixel `gain`, saturating at white."""
    return cv2.multiply(image, cv2.merge([gain] * 3), dtype=cv2.CV_8U)


def ground_rays(camera: CameraParams, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: where its ray meets the ground in the car frame (x forward, y left, metres; inf
    where it misses the ground within range), and the pixel's ground footprint (metres)."""
    k = camera.intrinsics(width, height)
    pitch = math.radians(camera.pitch_deg)
    cos_p, sin_p = math.cos(pitch), math.sin(pitch)

    def hit(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        xn, yn, seen = _pixel_rays(camera, k, u, v)
        down = sin_p + cos_p * yn
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down > 1e-9, camera.height_m / down, np.inf)
            ahead, left = t * (cos_p - sin_p * yn), -t * xn
            point = np.stack([camera.forward_m + ahead, left], axis=-1)
        return np.where((seen & (np.hypot(ahead, left) <= camera.max_range_m))[..., None], point, np.inf)

    v, u = np.mgrid[0 : height + 1, 0 : width + 1].astype(np.float64)
    grid = hit(u, v)
    here = grid[:-1, :-1]
    with np.errstate(invalid="ignore"):
        du = np.linalg.norm(grid[:-1, 1:] - here, axis=-1)
        dv = np.linalg.norm(grid[1:, :-1] - here, axis=-1)
        footprint = np.sqrt(du * dv)
    footprint[np.isnan(footprint)] = np.inf
    return here, footprint


def _pixel_rays(camera: CameraParams, k: np.ndarray, u: np.ndarray,
                v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel's ray as undistorted normalised camera coordinates (x right, y down), rolled,
    and whether the lens maps any ray there (strong barrel distortion folds past some radius)."""
    xn = (u - k[0, 2]) / k[0, 0]
    yn = (v - k[1, 2]) / k[1, 1]
    seen = np.ones(xn.shape, bool)
    if any(camera.distortion):
        xd, yd = xn, yn
        xn, yn = undistort(xd, yd, camera.distortion)
        rx, ry = distort(xn, yn, camera.distortion)
        seen = np.isfinite(xn) & (np.hypot(rx - xd, ry - yd) < 1e-4)
    if camera.roll_deg:
        c, s = math.cos(math.radians(camera.roll_deg)), math.sin(math.radians(camera.roll_deg))
        xn, yn = c * xn - s * yn, s * xn + c * yn
    return xn, yn, seen


def distort(x: np.ndarray, y: np.ndarray, coefficients: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """ROS plumb_bob (OpenCV k1, k2, p1, p2, k3): ideal normalised coordinates -> the lens's."""
    k1, k2, p1, p2, k3 = (tuple(coefficients) + (0.0,) * 5)[:5]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return (x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
            y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)


def undistort(xd: np.ndarray, yd: np.ndarray, coefficients: tuple[float, ...],
              iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Invert `distort` by fixed-point iteration from the distorted point (OpenCV's method)."""
    k1, k2, p1, p2, k3 = (tuple(coefficients) + (0.0,) * 5)[:5]
    x, y = xd.copy(), yd.copy()
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            r2 = x * x + y * y
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            x = (xd - 2.0 * p1 * x * y - p2 * (r2 + 2.0 * x * x)) / radial
            y = (yd - p1 * (r2 + 2.0 * y * y) - 2.0 * p2 * x * y) / radial
    return x, y


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
    """What lies beyond the ground in range: the room's walls, darker towards the top, with
    `background_clutter` upright shapes (people, furniture) standing against them."""
    blend = np.linspace(0.0, 1.0, height)[:, None]
    column = (1.0 - blend) * np.array(scene.background_top_bgr) + blend * np.array(scene.background_bottom_bgr)
    wall = np.repeat(np.round(column).astype(np.uint8)[:, None, :], width, axis=1)
    rng = _streams(scene.seed + 1, 1)[0]
    for _ in range(scene.background_clutter):
        left = int(rng.integers(0, width))
        right = left + int(rng.uniform(0.04, 0.25) * width)
        top = int(rng.uniform(0.0, 0.8) * height)
        cv2.rectangle(wall, (left, top), (right, height - 1), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return _shade(wall, np.full((height, width), scene.light, np.float32)) if scene.light != 1.0 else wall


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
