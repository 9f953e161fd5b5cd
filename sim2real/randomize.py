"""Domain randomization: the knobs that make simulated frames and dynamics vary like real rooms,
cameras and cars, so a policy trained across them drives in conditions the simulator never showed.

Every knob is a `Knob` in `KNOBS` (unit, nominal value, `default` and `strong` preset ranges,
physical limits). A `Randomization` maps knob names to ranges and draws `Domain`s from them,
deterministically from a seed; a `Domain` replaces fields of the simulator's `SceneParams`,
`CameraParams`, `VehicleParams` and `SensorParams`. Knobs a randomization does not name keep the
simulator's base values, so a calibrated camera (see `camera_matching`) stays as measured.

YAML form (`Randomization.load` / `save`)::

    preset: default          # optional starting point: none | default | strong
    knobs:                   # optional: [low, high] ranges, or one value to fix a knob
      light: [0.6, 1.4]
      delay_ms: 80
    nominal_share: 0.2       # optional, 0..1: the share of domains left at every knob's base value
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from car.yamlfile import read_yaml
from sim2real.sim.expert import PurePursuitExpert
from sim2real.sim.render import CameraParams, Colour, SceneParams
from sim2real.sim.sensor import Sensor, SensorParams
from sim2real.sim.track import Track
from sim2real.sim.vehicle import VehicleParams
from sim2real.sim.world import Simulator

PRESETS = ("none", "default", "strong")
# The share of a preset's domains left at the base world (`Randomization.nominal_share`): with none,
# a model trained on the default ranges (lenses 58-135 deg) left the plain simulator's closed tracks at
# max-speed 1.0; with a quarter it laps them all (docs/gap.md).
PRESET_NOMINAL_SHARE = 0.25


class RandomizationError(ValueError):
    """A knob name, value, range or config file that does not make sense."""


@dataclass(frozen=True)
class Knob:
    """One knob: `nominal` is the simulator's own value; `default` and `strong` are the preset
    ranges; `limits` are the values that make physical sense. Count knobs draw integers."""

    name: str
    group: str
    unit: str
    nominal: float
    default: tuple[float, float]
    strong: tuple[float, float]
    limits: tuple[float, float]
    doc: str
    count: bool = False

    def draw(self, rng: np.random.Generator, low: float, high: float) -> float:
        if self.count:
            return float(rng.integers(round(low), round(high) + 1))
        return float(rng.uniform(low, high))


KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("surface_shade", "visual", "x", 1.0, (0.75, 1.3), (0.5, 1.8), (0.0, 5.0),
         "track surface brightness relative to the DeepRacer blue-grey"),
    Knob("surface_hue_deg", "visual", "deg", 0.0, (-20.0, 20.0), (-60.0, 60.0), (-180.0, 180.0),
         "hue rotation of the track surface colour"),
    Knob("floor_shade", "visual", "x", 1.0, (0.7, 1.3), (0.4, 1.8), (0.0, 5.0),
         "brightness of the floor around the track"),
    Knob("floor_hue_deg", "visual", "deg", 0.0, (-30.0, 30.0), (-90.0, 90.0), (-180.0, 180.0),
         "hue rotation of the floor colour (green carpet -> grey, blue, red)"),
    Knob("texture_noise", "visual", "grey levels", 0.0, (0.0, 8.0), (0.0, 18.0), (0.0, 100.0),
         "std of grain and blotches on floor and track surface"),
    Knob("line_shade", "visual", "x", 1.0, (0.8, 1.0), (0.6, 1.0), (0.0, 2.0),
         "brightness of the white border lines (dirty tape is darker)"),
    Knob("centre_hue_deg", "visual", "deg", 0.0, (-8.0, 8.0), (-20.0, 20.0), (-180.0, 180.0),
         "hue rotation of the yellow centre line (orange to lime)"),
    Knob("line_width", "visual", "x", 1.0, (0.85, 1.2), (0.7, 1.4), (0.1, 5.0),
         "width of border strips and centre line relative to 7.62 cm and 2.54 cm"),
    Knob("line_wear", "visual", "fraction", 0.0, (0.0, 0.2), (0.0, 0.4), (0.0, 1.0),
         "fraction of the painted lines worn away, in patches"),
    Knob("light", "visual", "x", 1.0, (0.75, 1.3), (0.5, 1.7), (0.0, 10.0),
         "global illumination of floor, track and walls"),
    Knob("light_gradient", "visual", "fraction", 0.0, (0.0, 0.25), (0.0, 0.5), (0.0, 1.0),
         "relative light change from the middle of the room to its edge, in a random direction"),
    Knob("light_spots", "visual", "count", 0.0, (0.0, 3.0), (0.0, 6.0), (0.0, 50.0),
         "pools of light (ceiling lamps, windows) on or near the track", count=True),
    Knob("spot_gain", "visual", "fraction", 0.4, (0.2, 0.5), (0.2, 0.9), (0.0, 5.0),
         "how much a pool of light brightens the floor at its centre"),
    Knob("shadows", "visual", "count", 0.0, (0.0, 3.0), (0.0, 8.0), (0.0, 50.0),
         "soft shadows (furniture, people) on or near the track", count=True),
    Knob("shadow_depth", "visual", "fraction", 0.4, (0.2, 0.5), (0.2, 0.7), (0.0, 1.0),
         "fraction of the light a shadow blocks"),
    Knob("background_shade", "visual", "x", 1.0, (0.6, 2.5), (0.3, 5.0), (0.0, 20.0),
         "brightness of the walls above the horizon"),
    Knob("background_hue_deg", "visual", "deg", 0.0, (-60.0, 60.0), (-180.0, 180.0), (-180.0, 180.0),
         "hue rotation of the walls"),
    Knob("background_clutter", "visual", "count", 0.0, (0.0, 5.0), (0.0, 12.0), (0.0, 100.0),
         "upright shapes (people, furniture) against the walls", count=True),
    Knob("distractors", "visual", "count", 0.0, (0.0, 8.0), (0.0, 20.0), (0.0, 200.0),
         "objects lying on the floor (paper, tape, leaves), some on the track", count=True),
    Knob("camera_height_m", "camera", "m", 0.1328, (0.10, 0.145), (0.09, 0.16), (0.02, 0.5),
         "lens height above the floor"),
    Knob("camera_forward_m", "camera", "m", 0.142, (0.12, 0.165), (0.08, 0.20), (-0.2, 0.5),
         "lens ahead of the axle midpoint (the car's reported position)"),
    Knob("camera_pitch_deg", "camera", "deg", 13.61, (10.5, 24.0), (7.0, 28.0), (0.0, 60.0),
         "downward tilt of the optical axis"),
    Knob("camera_roll_deg", "camera", "deg", 0.0, (-3.0, 3.0), (-5.0, 5.0), (-30.0, 30.0),
         "lean of the camera about its optical axis, + = to the right"),
    Knob("camera_hfov_deg", "camera", "deg", 64.74, (58.0, 135.0), (50.0, 150.0), (30.0, 170.0),
         "horizontal field of view (the AWS simulator's 64.74 deg pinhole up to the real car's wide lens)"),
    Knob("lens_fisheye", "camera", "fraction", 0.0, (0.0, 1.0), (0.0, 1.0), (0.0, 1.0),
         "projection from pinhole (0) to equidistant f-theta (1): the barrel distortion of wide M12 lenses"),
    Knob("lens_k1", "camera", "1", 0.0, (-0.05, 0.05), (-0.2, 0.12), (-0.5, 1.0),
         "plumb_bob radial distortion k1 (- = barrel; strong barrel folds the image corners)"),
    Knob("exposure_ev", "camera", "EV", 0.0, (-0.4, 0.4), (-0.8, 0.8), (-5.0, 5.0),
         "exposure error in stops (gain 2**ev, saturating)"),
    Knob("sensor_noise", "camera", "grey levels", 0.0, (0.0, 4.0), (0.0, 10.0), (0.0, 100.0),
         "std of per-pixel read-out noise"),
    Knob("motion_blur_px", "camera", "px", 0.0, (0.0, 2.5), (0.0, 5.0), (0.0, 40.0),
         "length of the motion-blur streak, roughly horizontal"),
    Knob("jpeg_quality", "camera", "%", 100.0, (60.0, 100.0), (25.0, 100.0), (1.0, 100.0),
         "JPEG quality of the camera stream (100 = uncompressed)"),
    Knob("steering_trim", "dynamics", "servo units", 0.0, (-0.04, 0.04), (-0.08, 0.08), (-0.5, 0.5),
         "servo offset added to every normalised steering command (+ = left)"),
    Knob("steering_gain", "dynamics", "x", 1.0, (0.9, 1.1), (0.8, 1.2), (0.1, 3.0),
         "servo travel per unit of steering command"),
    Knob("throttle_gain", "dynamics", "x", 1.0, (0.9, 1.1), (0.8, 1.25), (0.1, 3.0),
         "top speed per unit of throttle command (battery, ESC)"),
    Knob("delay_ms", "dynamics", "ms", 0.0, (0.0, 60.0), (0.0, 120.0), (0.0, 500.0),
         "pure actuation delay from command to wheels, before the steering lag"),
    Knob("steering_lag_ms", "dynamics", "ms", 490.0, (350.0, 650.0), (200.0, 900.0), (0.0, 3000.0),
         "time constant of the first-order lag the wheel angle follows the servo command with"),
    Knob("wheelbase_m", "dynamics", "m", 0.164, (0.157, 0.171), (0.15, 0.18), (0.05, 0.5),
         "distance between the axles"),
)}


# What `racer calibrate camera` measures: field of view and distortion.
LENS_KNOBS = ("camera_hfov_deg", "lens_fisheye", "lens_k1")


def knob_named(name: str) -> Knob:
    try:
        return KNOBS[name]
    except KeyError:
        raise RandomizationError(f"unknown randomization knob {name!r}; known knobs: {', '.join(KNOBS)}") from None


def check_value(name: str, value: Any) -> float:
    """`value` as a float within the knob's limits, or an error naming the knob."""
    knob = knob_named(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise RandomizationError(f"knob {name}: expected a number, got {value!r}")
    low, high = knob.limits
    if not low <= value <= high:
        raise RandomizationError(f"knob {name}: {value} is outside {low}..{high} {knob.unit}")
    return float(value)


@dataclass(frozen=True)
class Domain:
    """One concrete world: values for some knobs (the rest keep the simulator's base values) and
    the `seed` that places spots, shadows, distractors, grain and sensor noise."""

    values: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", {name: check_value(name, v) for name, v in self.values.items()})

    def _get(self, name: str) -> float:
        return self.values.get(name, KNOBS[name].nominal)

    def scene(self, base: SceneParams) -> SceneParams:
        v, get = self.values, self._get
        width = get("line_width")
        return replace(
            base,
            track_bgr=_tint(base.track_bgr, get("surface_hue_deg"), get("surface_shade")),
            floor_bgr=_tint(base.floor_bgr, get("floor_hue_deg"), get("floor_shade")),
            border_bgr=_tint(base.border_bgr, 0.0, get("line_shade")),
            centre_bgr=_tint(base.centre_bgr, get("centre_hue_deg"), 1.0),
            wall_bgr=_tint(base.wall_bgr, get("background_hue_deg"), get("background_shade")),
            wall_shade_bgr=_tint(base.wall_shade_bgr, get("background_hue_deg"), get("background_shade")),
            sky_bgr=_tint(base.sky_bgr, get("background_hue_deg"), get("background_shade")),
            border_line_m=base.border_line_m * width,
            centre_line_m=base.centre_line_m * width,
            texture_noise=v.get("texture_noise", base.texture_noise),
            line_wear=v.get("line_wear", base.line_wear),
            light=v.get("light", base.light),
            light_gradient=v.get("light_gradient", base.light_gradient),
            light_spots=int(v.get("light_spots", base.light_spots)),
            spot_gain=v.get("spot_gain", base.spot_gain),
            shadows=int(v.get("shadows", base.shadows)),
            shadow_depth=v.get("shadow_depth", base.shadow_depth),
            distractors=int(v.get("distractors", base.distractors)),
            background_clutter=int(v.get("background_clutter", base.background_clutter)),
            seed=self.seed if self.values else base.seed,
        )

    def camera(self, base: CameraParams) -> CameraParams:
        v = self.values
        distortion = (v["lens_k1"],) + tuple(base.distortion[1:]) if "lens_k1" in v else base.distortion
        return replace(base, height_m=v.get("camera_height_m", base.height_m),
                       forward_m=v.get("camera_forward_m", base.forward_m),
                       pitch_deg=v.get("camera_pitch_deg", base.pitch_deg),
                       roll_deg=v.get("camera_roll_deg", base.roll_deg),
                       hfov_deg=v.get("camera_hfov_deg", base.hfov_deg), distortion=distortion,
                       fisheye=v.get("lens_fisheye", base.fisheye))

    def vehicle(self, base: VehicleParams) -> VehicleParams:
        v = self.values
        return replace(base, steering_trim=v.get("steering_trim", base.steering_trim),
                       steering_gain=v.get("steering_gain", base.steering_gain),
                       throttle_gain=v.get("throttle_gain", base.throttle_gain),
                       delay_s=v["delay_ms"] / 1000.0 if "delay_ms" in v else base.delay_s,
                       steering_lag_s=v["steering_lag_ms"] / 1000.0 if "steering_lag_ms" in v else base.steering_lag_s,
                       wheelbase_m=v.get("wheelbase_m", base.wheelbase_m))

    def sensor(self) -> SensorParams:
        angle = float(np.random.default_rng(self.seed).uniform(-20.0, 20.0))
        return SensorParams(exposure_ev=self._get("exposure_ev"), noise_std=self._get("sensor_noise"),
                            motion_blur_px=self._get("motion_blur_px"), blur_angle_deg=angle,
                            jpeg_quality=self._get("jpeg_quality"))


def _tint(bgr: Colour, hue_deg: float, shade: float) -> Colour:
    """A colour with its hue turned by `hue_deg` and its brightness scaled by `shade`."""
    if hue_deg == 0.0 and shade == 1.0:
        return bgr
    hsv = cv2.cvtColor(np.array([[bgr]], np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0] + hue_deg) % 360.0
    hsv[..., 2] *= shade
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0] * 255.0
    b, g, r = (int(c) for c in np.clip(np.round(out), 0, 255))
    return b, g, r


@dataclass(frozen=True)
class Randomization:
    """Sampling ranges per knob; `sample` draws a `Domain` with a uniform value in each range, or with
    probability `nominal_share` (0..1) the base world itself (the simulator's own, or a calibrated
    camera as measured), so that a policy trained across wide ranges still meets the world at their
    centre often: the plain simulator's camera sits at the edge of the default lens ranges."""

    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    nominal_share: float = 0.0

    def __post_init__(self) -> None:
        share = self.nominal_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise RandomizationError(f"nominal_share must be a number in [0, 1], got {share!r}")
        checked = {}
        for name, bounds in self.ranges.items():
            low, high = (check_value(name, b) for b in bounds)
            if low > high:
                raise RandomizationError(f"knob {name}: range [{low}, {high}] is empty")
            checked[name] = (low, high)
        object.__setattr__(self, "ranges", {name: checked[name] for name in KNOBS if name in checked})

    @classmethod
    def preset(cls, name: str) -> Randomization:
        if name not in PRESETS:
            raise RandomizationError(f"unknown randomization preset {name!r}; presets: {', '.join(PRESETS)}")
        if name == "none":
            return cls()
        return cls({k.name: getattr(k, name) for k in KNOBS.values()}, PRESET_NOMINAL_SHARE)

    @classmethod
    def load(cls, spec: str | Path) -> Randomization:
        """A preset name, or the path of a YAML config."""
        if str(spec) in PRESETS:
            return cls.preset(str(spec))
        if not Path(spec).is_file():
            raise RandomizationError(f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a YAML file")
        return cls.from_document(read_yaml(spec, RandomizationError), str(spec))

    @classmethod
    def from_document(cls, doc: Any, source: str = "randomization") -> Randomization:
        """From a parsed config (`preset` and/or `knobs`); errors name `source`."""
        doc = {} if doc is None else doc
        if isinstance(doc, dict) and "test_distribution" in doc:
            raise RandomizationError(f"{source}: the held-out test distribution {doc['test_distribution']!r}; "
                                     "training never draws from it")
        if not isinstance(doc, dict):
            raise RandomizationError(f"{source}: expected a mapping with 'preset' and/or 'knobs'")
        unknown = sorted(set(doc) - {"preset", "knobs", "nominal_share"})
        if unknown:
            raise RandomizationError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; "
                                     "expected preset, knobs, nominal_share")
        knobs = doc.get("knobs") or {}
        if not isinstance(knobs, dict):
            raise RandomizationError(f"{source}: knobs must map knob names to [low, high] or a value")
        try:
            preset = cls.preset(str(doc.get("preset", "none")))
            ranges = dict(preset.ranges)
            for name, value in knobs.items():
                if isinstance(value, list) and len(value) != 2:
                    raise RandomizationError(f"knob {name}: a range is [low, high], got {value!r}")
                ranges[str(name)] = tuple(value) if isinstance(value, list) else (value, value)
            return cls(ranges, doc.get("nominal_share", preset.nominal_share))
        except RandomizationError as exc:
            raise RandomizationError(f"{source}: {exc}") from None

    def to_yaml(self) -> str:
        header = "# racer domain randomization: knob: [low, high]; units in sim2real/randomize.py KNOBS\n"
        doc: dict[str, Any] = {"knobs": {k: list(r) for k, r in self.ranges.items()}}
        if self.nominal_share:
            doc["nominal_share"] = self.nominal_share
        return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        Path(path).write_text(self.to_yaml())
        return Path(path)

    def for_calibrated_lens(self) -> Randomization:
        """This randomization without the lens knobs (`LENS_KNOBS`), for training with a camera
        calibration (`racer train --camera-info`): the lens is measured, the mounting still varies."""
        return Randomization({name: r for name, r in self.ranges.items() if name not in LENS_KNOBS},
                             self.nominal_share)

    def sample(self, rng: np.random.Generator) -> Domain:
        values = {name: KNOBS[name].draw(rng, low, high) for name, (low, high) in self.ranges.items()}
        seed = int(rng.integers(2**31))
        # drawn after the knobs and seed, so that without a share the random stream is the one earlier runs used
        if self.nominal_share and rng.random() < self.nominal_share:
            return Domain({}, seed)
        return Domain(values, seed)

    def outside(self, values: Mapping[str, float]) -> list[str]:
        """The knobs whose value lies outside this randomization's range (its nominal when unranged)."""
        out = []
        for name, value in values.items():
            knob = knob_named(name)
            low, high = self.ranges.get(name, (knob.nominal, knob.nominal))
            if not low <= value <= high:
                out.append(name)
        return out


class DomainSimulator(Simulator):
    """A simulator whose world, camera, sensor and car come from a `Domain`; `randomize` draws the
    next one from `randomization`, deterministically from `seed`. The renderer is rebuilt only
    when the scene or camera changes (about 50 ms), so draw a domain per episode, not per step."""

    def __init__(self, track: Track, randomization: Randomization | None = None, seed: int = 0,
                 width: int = 160, height: int = 120, dt: float = 1.0 / 15.0, vehicle: VehicleParams | None = None,
                 camera: CameraParams | None = None, scene: SceneParams | None = None) -> None:
        self.randomization = randomization or Randomization()
        self.base_vehicle = vehicle or VehicleParams()
        self.base_camera = camera or CameraParams()
        self.base_scene = scene or SceneParams()
        self._rng = np.random.default_rng(seed)
        super().__init__(track, width=width, height=height, dt=dt, vehicle=self.base_vehicle,
                         camera=self.base_camera, scene=self.base_scene)
        self.set_domain(Domain())

    def randomize(self) -> Domain:
        return self.set_domain(self.randomization.sample(self._rng))

    def set_domain(self, domain: Domain) -> Domain:
        camera, scene = domain.camera(self.base_camera), domain.scene(self.base_scene)
        if (camera, scene) != (self.camera, self.scene):
            self.camera, self.scene, self._renderer = camera, scene, None
        self.vehicle.params = domain.vehicle(self.base_vehicle)
        self.sensor = Sensor(domain.sensor(), self.width, self.height, domain.seed)
        self.domain = domain
        return domain

    def render(self) -> np.ndarray:
        return self.sensor.apply(super().render())


def bench_sim_randomized(seconds: float = 2.0, preset: str = "default", episode_steps: int = 600,
                         width: int = 160, height: int = 120) -> dict[str, Any]:
    """Steps per second of the training loop's simulator part: the expert drives episodes of
    `episode_steps` steps, each in a new `preset` domain (renderer rebuild included), rendering
    every step."""
    sim = DomainSimulator(Track.load("reinvent_base"), Randomization.preset(preset), seed=0, width=width,
                          height=height)
    expert = PurePursuitExpert(sim.track)
    steps = domains = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.randomize()
        expert.vehicle = sim.vehicle.params
        sim.reset(start_index=domains * 17 % sim.track.waypoint_count)
        domains += 1
        for _ in range(episode_steps):
            sim.render()
            st = sim.vehicle.state
            sim.apply(*expert.act(st.x, st.y, st.yaw, st.speed, st.steering_rad))
            steps += 1
            if sim.step().off_track:
                break
    return {"steps_per_s": round(steps / (time.perf_counter() - t0), 1), "preset": preset, "domains": domains,
            "episode_steps": episode_steps, "width": width, "height": height}
