"""`racer sim render`, `racer sim fit-dynamics` and `racer sim generate-track`: the simulator's camera
at a pose, its car's dynamics fitted to a DeepRacer simtrace, and random closed tracks."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from racer.commands import fail


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sim", help="the simulator: camera renders, dynamics fits, random tracks",
                       description="Tools around the built-in DeepRacer simulator.")
    ssub = s.add_subparsers(dest="sim_command", metavar="ACTION")
    ssub.required = True
    r = ssub.add_parser("render", help="write what the car's camera sees at a pose",
                        description="Renders the nominal simulator's camera frame (the AWS DeepRacer simulator's "
                                    "camera and world) with the car at a pose on a track.")
    r.add_argument("track", metavar="TRACK", help="a built-in track name or a DeepRacer .npy outline")
    r.add_argument("--pose", required=True, metavar="X,Y,YAW",
                   help="car position in metres (the axle midpoint, as simtraces log it) and yaw in radians")
    r.add_argument("--size", default="160x120", metavar="WxH",
                   help="image size in pixels (default: %(default)s, the model input; the camera is 640x480)")
    r.add_argument("--out", required=True, type=Path, help="image file to write (.png, .jpg)")
    r.add_argument("--beside", type=Path, metavar="IMAGE",
                   help="write this picture (e.g. a Gazebo frame at the same pose) and the render, at the "
                        "picture's size, side by side")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.set_defaults(func=run_render)

    f = ssub.add_parser("fit-dynamics", help="fit the steering lag and speed response to a simtrace",
                        description="Fits a first-order lag with a gain to the steering (yaw rate = gain * v * "
                                    "tan(lagged steer) / wheelbase) and to the speed of a DeepRacer simtrace CSV, "
                                    "then replays the trace's commands open loop through the simulator's car "
                                    "with the fitted values.")
    f.add_argument("simtrace", type=Path, help="a DeepRacer simtrace CSV (e.g. evaluation-simtrace/0-iteration.csv)")
    f.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    f.set_defaults(func=run_fit)

    g = ssub.add_parser("generate-track", help="write a random closed track as a DeepRacer .npy outline",
                        description="Draws a closed track from a seed (a random polygon with rounded corners, a road "
                                    "of one width) and writes it in the official outlines' format, so every command "
                                    "that takes a track takes it (racer eval --tracks FILE.npy, racer sim render, "
                                    "racer train --tracks). The file's name is the track's name. One seed always "
                                    "gives the same track; the privileged expert laps every track it writes.")
    g.add_argument("--seed", type=int, required=True, help="the track's seed (a whole number)")
    g.add_argument("--out", type=Path, required=True, metavar="FILE.npy", help="the outline to write")
    g.add_argument("--corners", default="6,12", metavar="LOW,HIGH", help="corner count (default: %(default)s; 3-40)")
    g.add_argument("--length", default="16,30", metavar="LOW,HIGH",
                   help="lap length in metres, before the corners are rounded (default: %(default)s; "
                        "the stock closed tracks are 17-60 m; 4-200)")
    g.add_argument("--radius", default="0.45,1.6", metavar="LOW,HIGH",
                   help="corner radius of the centre line in metres (default: %(default)s; at least the "
                        "half-width plus 0.1 m whatever this says; 0.05-20)")
    g.add_argument("--half-width", default="0.30,0.55", metavar="LOW,HIGH",
                   help="road half-width in metres (default: %(default)s; the stock roads: 0.30-0.60; 0.1-2)")
    g.add_argument("--preview", type=Path, metavar="FILE.png",
                   help="also draw the track from above (needs the training extras' matplotlib)")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g.set_defaults(func=run_generate)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height), both positive."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be WxH, got {text!r}") from None
    if width < 8 or height < 8:
        raise ValueError(f"--size must be at least 8x8, got {text!r}")
    return width, height


def parse_pose(text: str) -> tuple[float, float, float]:
    """'X,Y,YAW' -> three floats."""
    try:
        x, y, yaw = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--pose must be X,Y,YAW (metres, metres, radians), got {text!r}") from None
    return x, y, yaw


def parse_range(flag: str, text: str, limits: tuple[float, float], kind: type = float) -> tuple:
    """'LOW,HIGH' -> (low, high) of `kind` with limits[0] <= low <= high <= limits[1]; ValueError
    naming `flag` otherwise."""
    try:
        low, high = (kind(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} must be LOW,HIGH, got {text!r}") from None
    if not limits[0] <= low <= high <= limits[1]:
        raise ValueError(f"{flag} must be LOW,HIGH with {limits[0]:g} <= LOW <= HIGH <= {limits[1]:g}, got {text!r}")
    return low, high


def run_generate(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from sim2real.runlog import write_atomic
    from sim2real.sim.generated_track import LIMITS, TrackGenerationError, TrackShape, generate_track
    from sim2real.sim.track import Track

    if args.out.suffix != ".npy":
        return fail("sim generate-track", f"--out must name a .npy file, got {str(args.out)!r}")
    if args.preview is not None and args.preview.suffix != ".png":
        return fail("sim generate-track", f"--preview must name a .png file, got {str(args.preview)!r}")
    if args.seed < 0:
        return fail("sim generate-track", f"--seed must be 0 or more, got {args.seed}")
    try:
        shape = TrackShape(corners=parse_range("--corners", args.corners, LIMITS["corners"], int),
                           length_m=parse_range("--length", args.length, LIMITS["length_m"]),
                           radius_m=parse_range("--radius", args.radius, LIMITS["radius_m"]),
                           half_width_m=parse_range("--half-width", args.half_width, LIMITS["half_width_m"]))
    except ValueError as exc:
        return fail("sim generate-track", str(exc))
    try:
        waypoints = generate_track(args.seed, shape)
    except TrackGenerationError as exc:
        return fail("sim generate-track", str(exc), code=1)
    track = Track(args.out.stem, waypoints)
    drawn = None  # the preview goes first and the outline last, so a failure leaves neither
    try:
        if args.preview is not None:
            from sim2real.plots import track_map
            args.preview.parent.mkdir(parents=True, exist_ok=True)
            drawn = track_map(waypoints, f"{track.name} (seed {args.seed}): {track.length:.1f} m, half-width "
                                         f"{track.half_width.mean():.2f} m, {track.orientation}", args.preview)
        outline = io.BytesIO()
        np.save(outline, waypoints)
        write_atomic(args.out, outline.getvalue())
    except (OSError, ValueError) as exc:
        if drawn is not None:
            drawn.unlink(missing_ok=True)
        return fail("sim generate-track", str(exc), code=1)
    report = {"track": track.name, "seed": args.seed, "out": str(args.out), "length_m": round(track.length, 2),
              "half_width_m": round(float(track.half_width.mean()), 3), "orientation": track.orientation,
              "waypoints": len(waypoints), "preview": str(args.preview) if args.preview else None}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"racer sim generate-track: wrote {args.out}: {report['length_m']} m, half-width "
              f"{report['half_width_m']} m, driven {track.orientation}", file=sys.stderr)
    return 0


def run_render(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from sim2real.sim.render import Renderer
    from sim2real.sim.track import Track

    try:
        size = parse_size(args.size)
        pose = parse_pose(args.pose)
        track = Track.load(args.track)
    except ValueError as exc:
        return fail("sim render", str(exc))
    picture = None
    if args.beside is not None:
        picture = cv2.imread(str(args.beside), cv2.IMREAD_COLOR)
        if picture is None:
            return fail("sim render", f"cannot read an image from {args.beside}")
        size = (picture.shape[1], picture.shape[0])
    frame = Renderer(track, *size).render(*pose)
    if picture is not None:
        frame = np.hstack([picture, frame])
    if not track.on_track(pose[0], pose[1], 0.0):
        print(f"racer sim render: note: ({pose[0]}, {pose[1]}) is off the road of {track.name}", file=sys.stderr)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(args.out), frame)
    except cv2.error as exc:
        return fail("sim render", f"{args.out}: {exc}", code=1)
    if not written:
        return fail("sim render", f"could not write {args.out} (use .png or .jpg)", code=1)
    if args.json:
        print(json.dumps({"track": track.name, "pose": list(pose), "size": list(size), "out": str(args.out),
                          "beside": str(args.beside) if args.beside else None}))
    else:
        print(f"racer sim render: wrote {args.out}", file=sys.stderr)
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from sim2real.dynamics_fit import fit_speed, fit_steering, replay_yaw_rate, vehicle_from_fits
    from sim2real.simtrace import Simtrace, SimtraceError

    try:
        trace = Simtrace.load(args.simtrace)
    except (OSError, SimtraceError) as exc:
        return fail("sim fit-dynamics", str(exc), code=1)
    steering, instant, speed = fit_steering(trace), fit_steering(trace, tau=0.0), fit_speed(trace)
    replay = replay_yaw_rate(trace, vehicle_from_fits(steering, speed))
    report = {"simtrace": str(args.simtrace), "steering": steering.to_json(), "instant_steering": instant.to_json(),
              "speed": speed.to_json(), "replay_yaw_rate_r2": round(replay, 3)}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"steering lag tau {steering.tau_s:.3f} s, yaw-rate gain {steering.gain:.3f}, R^2 {steering.r2:.3f} "
          f"({steering.samples} steps; instant steering: gain {instant.gain:.3f}, R^2 {instant.r2:.3f})\n"
          f"speed lag tau {speed.tau_s:.3f} s, gain {speed.gain:.3f}, R^2 {speed.r2:.3f}\n"
          f"open-loop replay through the simulator's car: yaw-rate R^2 {replay:.3f}", file=sys.stderr)
    return 0
