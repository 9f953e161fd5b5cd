"""Camera view of the track from the car: a pinhole camera in the AWS DeepRacer simulator's world,
a painted ground plane inside a walled field with the sky above (docs/simulator.md).

Speed comes from doing the geometry once. Each pixel's ray is intersected at construction, in the
car frame, with the ground if it points down, else with the horizontal plane of the wall tops; a
frame is then one affine transform of those points by the car pose and one `cv2.remap` into an
atlas. The atlas holds the top-down ground texture at several mip levels (each pixel samples the
level matching its ground footprint, so distant paint does not alias) and a coarse texture of the
wall-top plane. Walls are vertical, the field is convex and the camera is inside it, so a ray
crosses a wall exactly when the point where it meets its plane lies outside the field: both
textures paint the outside of the field with the colour of the wall in that direction (beyond a
corner, split on the line from the field's centre through the corner) and the inside with grass or
sky.
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
# The wall-top plane's texture has 8 cm texels: the wall-top edge is sharp to a pixel at 160x120.
SKY_LEVEL = 3


@dataclass(frozen=True)
class CameraParams:
    """The camera's mounting on the car and its lens; lengths in metres, angles in degrees.

    Defaults are the AWS simulator's camera (URDF values, docs/simulator.md): 64.74 deg
    ideal pinhole, lens 0.1328 m above the floor and 0.142 m ahead of the axle midpoint, pitched
    13.61 deg down. It is what AWS-trained models saw, not a measurement of the real car's lens.

    The lens projects a ray at angle theta from the optical axis to radius f * ((1 - fisheye) *
    tan(theta) + fisheye * theta): `fisheye` 0 is a pinhole (rectilinear), 1 an equidistant
    f-theta lens, the projection cheap wide lenses come close to (a 120 deg diagonal M12 lens is
    barrel distorted to about 0.6 of the pinhole radius in its corners). `hfov_deg` is the angle
    across the image width that projection gives; ROS plumb_bob `distortion` (k1, k2, p1, p2, k3,
    in normalised coordinates), as a calibration measures it, then bends it. `aspect` (fy / fx) and
    `principal_offset` (cx, cy from the image centre, as fractions of width and height) let a
    calibrated camera be reproduced at any render size. Positive `roll_deg` leans the camera to
    the right (clockwise seen from behind), so the horizon rises on the right of the image.
    """

    height_m: float = 0.1328
    pitch_deg: float = 13.61
    hfov_deg: float = 64.74
    forward_m: float = 0.142
    max_range_m: float = 100.0
    roll_deg: float = 0.0
    aspect: float = 1.0
    principal_offset: tuple[float, float] = (0.0, 0.0)
    distortion: tuple[float, ...] = ()
    fisheye: float = 0.0

    def radius(self, theta: np.ndarray | float) -> np.ndarray | float:
        """Normalised image radius (units of the focal length) of a ray `theta` rad off the axis."""
        return (1.0 - self.fisheye) * np.tan(theta) + self.fisheye * np.asarray(theta)

    def off_axis(self, radius: np.ndarray) -> np.ndarray:
        """Inverse of `radius` by bisection (it rises monotonically on [0, pi/2)); nan beyond the lens."""
        low, high = np.zeros_like(radius), np.full_like(radius, math.pi / 2.0)
        for _ in range(40):
            mid = 0.5 * (low + high)
            below = self.radius(mid) < radius
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        theta = 0.5 * (low + high)
        return np.where(theta < math.pi / 2.0 - 1e-6, theta, np.nan)

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 matrix K for `hfov_deg` across the image width at this render size."""
        fx = 0.5 * width / float(self.radius(math.radians(self.hfov_deg) / 2.0))
        cx = (width - 1) / 2.0 + self.principal_offset[0] * width
        cy = (height - 1) / 2.0 + self.principal_offset[1] * height
        return np.array([[fx, 0.0, cx], [0.0, fx * self.aspect, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SceneParams:
    """How the world is painted: colours (BGR), paint sizes in metres, the walled field, and the
    texture's resolution. Defaults are the AWS simulator's reinvent_base world as rendered in its
    Gazebo frames (docs/simulator.md): border strips `border_line_m` wide lying inside
    the road, a dashed centre line, a grass field reaching `field_margin_m` beyond the track on
    every side inside walls `wall_height_m` high, and the sky above. A wall is `wall_bgr` when its
    inner face meets the light travelling horizontally along `light_direction` (x, y), else
    `wall_shade_bgr` (which walls are lit was read off the Gazebo frames: east and north).

    The remaining fields give a real room's untidiness, all off by default: `texture_noise` grain
    and blotches on floor and track (grey levels, std), `line_wear` (fraction of paint worn off),
    `light` (global illumination gain), `light_gradient` (relative light change from the middle
    of the room to its edge), `light_spots` pools of light brightening the floor by up to
    `spot_gain`, `shadows` soft shadows blocking `shadow_depth` of the light, `distractors`
    (objects lying on the floor, on or near the track) and `background_clutter` (shapes against
    the walls). `seed` says where they fall.
    """

    floor_bgr: Colour = (116, 150, 106)
    track_bgr: Colour = (72, 55, 41)
    border_bgr: Colour = (207, 211, 212)
    centre_bgr: Colour = (1, 129, 214)
    wall_bgr: Colour = (27, 23, 12)
    wall_shade_bgr: Colour = (3, 2, 1)
    sky_bgr: Colour = (178, 178, 178)
    border_line_m: float = 0.0762
    centre_line_m: float = 0.0254
    dash_m: float = 0.0508
    gap_m: float = 0.0508
    field_margin_m: float = 0.91
    wall_height_m: float = 1.0
    light_direction: tuple[float, float] = (0.5, 0.1)
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


def field_bounds(track: Track, scene: SceneParams) -> tuple[float, float, float, float]:
    """The walled field (x_min, y_min, x_max, y_max) in metres: the track's bounding box grown by
    `field_margin_m` (reinvent_base's field reaches 0.90-0.92 m beyond its borders)."""
    corners = np.concatenate([track.inner, track.outer])
    low, high = corners.min(axis=0) - scene.field_margin_m, corners.max(axis=0) + scene.field_margin_m
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def _paint_walls(image: np.ndarray, x0: float, y0: float, m: float, field: tuple[float, float, float, float],
                 scene: SceneParams, inside: Colour | None) -> None:
    """Paint a texture whose texel (col, row) is centred on world (x0 + col*m, y0 - row*m): outside
    the field, the colour of the wall a ray from inside crosses to get there (exact for rays from
    the field's centre, which decides beyond a corner); inside, `inside` (None keeps what is there)."""
    rows, cols = image.shape[:2]
    x = x0 + np.arange(cols) * m
    y = y0 - np.arange(rows) * m
    # Only the bands outside the field are worked on: the texture is mostly field.
    c0, c1 = np.searchsorted(x, field[0]), np.searchsorted(x, field[2], side="right")
    r0, r1 = np.searchsorted(-y, -field[3]), np.searchsorted(-y, -field[1], side="right")
    if inside is not None:
        image[r0:r1, c0:c1] = inside
    for rs, cs in ((slice(0, r0), slice(0, cols)), (slice(r1, rows), slice(0, cols)),
                   (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, cols))):
        bx, by = x[cs][None, :], y[rs][:, None]
        beyond_x = np.maximum(np.maximum(field[0] - bx, bx - field[2]), 0.0)
        beyond_y = np.maximum(np.maximum(field[1] - by, by - field[3]), 0.0)
        east_west = beyond_x * (field[3] - field[1]) >= beyond_y * (field[2] - field[0])
        # The inner normal of the wall each texel lies behind, facing the light or not.
        normal_x = np.where(east_west, np.where(bx > field[2], -1.0, 1.0), 0.0)
        normal_y = np.where(east_west, 0.0, np.where(by > field[3], -1.0, 1.0))
        lit = normal_x * scene.light_direction[0] + normal_y * scene.light_direction[1] < 0.0
        image[rs, cs] = np.where(lit[..., None], np.array(scene.wall_bgr, np.uint8),
                                 np.array(scene.wall_shade_bgr, np.uint8))


def draw_track_texture(track: Track, scene: SceneParams) -> TrackTexture:
    """Paint the field, the road, the border strips and the dashed centre line from above, then
    the room's untidiness and light (see `SceneParams`); beyond the field, the walls (see module)."""
    m = scene.metres_per_px
    field = field_bounds(track, scene)
    x0, y0 = field[0] - scene.margin_m, field[3] + scene.margin_m
    cols = int(math.ceil((field[2] + scene.margin_m - x0) / m)) + 1
    rows = int(math.ceil((y0 - field[1] + scene.margin_m) / m)) + 1
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
    for border in (track.inner, track.outer):
        line(_inset(border, track.centre, 0.5 * scene.border_line_m), track.closed, scene.border_bgr,
             scene.border_line_m)
    period = scene.dash_m + scene.gap_m
    # A round-capped stroke reaches half its width past each end of its centre line.
    cap = min(0.5 * scene.centre_line_m, 0.25 * scene.dash_m)
    for start in np.arange(0.0, track.length, period):
        end = min(start + scene.dash_m, track.length)
        s = np.linspace(start + cap, end - cap, max(2, int(scene.dash_m / m)))
        x, y, _ = track.point_at(s)
        line(np.stack([x, y], axis=1), False, scene.centre_bgr, scene.centre_line_m)
    if unpainted is not None:
        worn = _smooth_noise(wear, image.shape[:2], 6)
        worn = worn < np.quantile(worn[::4, ::4], scene.line_wear)
        image[worn] = unpainted[worn]
    _paint_walls(image, x0, y0, m, field, scene, None)
    _draw_wall_clutter(image, x0, y0, m, field, scene)
    texture = TrackTexture(image, x0, y0, m)
    if scene.light != 1.0 or scene.light_gradient or scene.light_spots or scene.shadows:
        image = _shade(image, _light_map(texture, track, scene, light))
    return TrackTexture(image, x0, y0, m)


def _inset(border: np.ndarray, centre: np.ndarray, depth_m: float) -> np.ndarray:
    """The border line moved `depth_m` towards the centre line (each border point faces its own
    centre-line point in DeepRacer's waypoint files)."""
    towards = centre - border
    return border + towards * (depth_m / np.maximum(np.linalg.norm(towards, axis=1, keepdims=True), 1e-9))


def _draw_wall_clutter(image: np.ndarray, x0: float, y0: float, m: float, field: tuple[float, float, float, float],
                       scene: SceneParams) -> None:
    """`background_clutter` upright shapes (people, furniture) standing against the walls: each a
    stretch of wall in one colour, painted behind the wall so every ray through it sees it."""
    rng = _streams(scene.seed + 1, 1)[0]
    width, height = field[2] - field[0], field[3] - field[1]
    for _ in range(scene.background_clutter):
        along = rng.uniform(0.0, 2.0 * (width + height))
        size = rng.uniform(0.3, 1.5)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if along < width:
            box = (field[0] + along, field[1] - 50.0, field[0] + along + size, field[1])
        elif along < width + height:
            box = (field[2], field[1] + along - width, field[2] + 50.0, field[1] + along - width + size)
        elif along < 2.0 * width + height:
            box = (field[0] + along - width - height, field[3], field[0] + along - width - height + size,
                   field[3] + 50.0)
        else:
            box = (field[0] - 50.0, field[1] + along - 2.0 * width - height, field[0],
                   field[1] + along - 2.0 * width - height + size)
        corners = ((box[0] - x0) / m, (y0 - box[3]) / m), ((box[2] - x0) / m, (y0 - box[1]) / m)
        cv2.rectangle(image, tuple(int(round(c)) for c in corners[0]), tuple(int(round(c)) for c in corners[1]),
                      colour, -1)


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
    return plane_rays(camera, width, height, camera.height_m)


def plane_rays(camera: CameraParams, width: int, height: int, drop_m: float) -> tuple[np.ndarray, np.ndarray]:
    """As `ground_rays` for the horizontal plane `drop_m` below the lens (negative: above it)."""
    k = camera.intrinsics(width, height)
    pitch = math.radians(camera.pitch_deg)
    cos_p, sin_p = math.cos(pitch), math.sin(pitch)

    def hit(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        xn, yn, seen = _pixel_rays(camera, k, u, v)
        down = sin_p + cos_p * yn
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down * drop_m > 1e-12, drop_m / down, np.inf)
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
    """Each pixel's ray as undistorted normalised pinhole coordinates (x right, y down), rolled,
    and whether the lens maps any ray there (strong barrel distortion folds past some radius)."""
    xn = (u - k[0, 2]) / k[0, 0]
    yn = (v - k[1, 2]) / k[1, 1]
    seen = np.ones(xn.shape, bool)
    if any(camera.distortion):
        xd, yd = xn, yn
        xn, yn = undistort(xd, yd, camera.distortion)
        rx, ry = distort(xn, yn, camera.distortion)
        seen = np.isfinite(xn) & (np.hypot(rx - xd, ry - yd) < 1e-4)
    if camera.fisheye:
        radius = np.hypot(xn, yn)
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = camera.off_axis(np.where(np.isfinite(radius), radius, 0.0))
            stretch = np.where(radius > 0.0, np.tan(theta) / radius, 1.0)
        seen &= np.isfinite(stretch)
        xn, yn = xn * stretch, yn * stretch
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
        sky_level = min(SKY_LEVEL, len(levels) - 1)
        self._atlas, origins, sky_origin = _pack_atlas(levels, _sky_texture(track, texture, levels[sky_level].shape,
                                                                               sky_level, self.scene))

        points, footprint = ground_rays(self.camera, width, height)
        ground = np.isfinite(points[..., 0])
        level = np.log2(np.maximum(footprint / texture.metres_per_px, 1.0))
        level = np.clip(np.round(np.where(ground, level, 0.0)), 0, len(levels) - 1).astype(int)
        up, _ = plane_rays(self.camera, width, height, self.camera.height_m - self.scene.wall_height_m)
        # Rays meeting neither plane in range run into a wall far away.
        up[~np.isfinite(up[..., 0])] = (self.camera.max_range_m, 0.0)
        points[~ground] = up[~ground]

        # A level-k texel coordinate is (level-0 coordinate + 0.5) / 2**k - 0.5, shifted to the
        # level's place in the atlas and clamped inside it (beyond the field it is wall colour).
        level[~ground] = sky_level
        scale = 0.5**level
        origin = np.asarray(origins, np.float64)[level]
        size = np.asarray([lv.shape[1::-1] for lv in levels], np.float64)[level]
        origin[~ground] = sky_origin
        offset = origin + (0.5 * scale - 0.5)[..., None]
        lo, hi = origin, origin + size - 1.0

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


def _sky_texture(track: Track, ground: TrackTexture, shape: tuple[int, ...], level: int,
                 scene: SceneParams) -> np.ndarray:
    """The wall-top plane seen from below at mip level `level` of the ground texture's grid: sky
    over the field, the walls (and what stands against them) beyond it."""
    image = np.empty(shape, np.uint8)
    step = ground.metres_per_px * 2**level
    # Level-k texel j is centred on level-0 coordinate (j + 0.5) * 2**k - 0.5.
    shift = (0.5 * 2**level - 0.5) * ground.metres_per_px
    x0, y0 = ground.x0 + shift, ground.y0 - shift
    field = field_bounds(track, scene)
    _paint_walls(image, x0, y0, step, field, scene, scene.sky_bgr)
    _draw_wall_clutter(image, x0, y0, step, field, scene)
    return _shade(image, np.full(shape[:2], scene.light, np.float32)) if scene.light != 1.0 else image


def _pack_atlas(
    levels: list[np.ndarray], sky: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """Level 0 on the left; the smaller levels and the sky stacked in a column beside it."""
    column = levels[1:] + [sky]
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
