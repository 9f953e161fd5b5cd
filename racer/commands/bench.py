"""`racer bench`: performance figures from one run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from car.config import DEFAULT_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure policy, pipeline, simulator, augmentation and DDS speed",
                       description="Policy inference (OpenVINO f32 and INT8 vs onnxruntime on the DeepRacer "
                                   "reference network), the camera-to-actuator pipeline in one process and across "
                                   "processes (and with a Foxglove client connected), simulator steps/s, augmentation "
                                   "images/s, DAgger rollout frames/s on 1 and 2 Ray workers, PPO environment steps/s "
                                   "with the console's network, image latency over DDS and over rclpy (after `make "
                                   "ros`); one run, one machine.")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="bundle for the pipeline figure (default: bundled)")
    p.add_argument("--quick", action="store_true", help="fewer samples (for smoke tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from racer.bench.figures import run_bench

    report = run_bench(args.model, quick=args.quick,
                       progress=lambda message: print(f"racer bench: {message}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"machine    {report['machine']}", file=sys.stderr)
    for line in policy_lines(report["policy"]):
        print(line, file=sys.stderr)
    pipe = report["pipeline"]
    print(f"pipeline   camera->actuator  p50 {pipe['p50_ms']:.3f} ms  p99 {pipe['p99_ms']:.3f} ms", file=sys.stderr)
    fox = report["foxglove"]
    print("foxglove   " + (fox.get("unavailable") or " ".join(
        f"{name.replace('_', ' ')}: p50 {fox[name]['p50_ms']:.3f} ms p99 {fox[name]['p99_ms']:.3f} ms;"
        for name in ("without_client", "with_client")) + f" the client got {fox['client_messages']} messages"),
        file=sys.stderr)
    sim = report["sim"]
    print(f"sim        {sim['steps_per_s']:.0f} steps/s at 160x120 "
          f"({sim['randomized']['steps_per_s']:.0f} with default randomization)", file=sys.stderr)
    print(f"augment    {report['augment']['images_per_s']:.0f} images/s (default preset, one core)", file=sys.stderr)
    train = report["train"]
    workers = train["frames_per_s"]
    figures = workers.get("unavailable") or ", ".join(f"{workers[n]:.0f} on {n} Ray worker(s)" for n in workers)
    print(f"train      DAgger rollouts {train['in_process']:.0f} frames/s in process; {figures}", file=sys.stderr)
    spent = ", ".join(f"{part.removesuffix('_s')} {seconds:.0f} s" for part, seconds in train["ppo_time"].items())
    print(f"           PPO (the console's network and defaults) {train['ppo_env_steps_per_s']:.0f} env steps/s "
          f"over {train['ppo_steps']} steps ({spent}); Gazebo: 15", file=sys.stderr)
    safety = report["safety"]
    for transport, neutral in safety["flood_neutral_ms"].items():
        print(f"safety     {transport:5s} neutral {neutral:.0f} ms after the driver went silent, e-stop "
              f"{safety['flood_estop_ms'][transport]:.1f} ms, under {safety['flood_connections'][transport]} idle "
              "connections and a login burst", file=sys.stderr)
    for transport, killed in safety.get("console_kill_neutral_ms", {}).items():
        print(f"safety     {transport:5s} neutral {killed:.0f} ms after the console process was killed (SIGKILL) "
              "while the car drove", file=sys.stderr)
    for transport, reason in safety.get("unavailable", {}).items():
        print(f"safety     {transport:5s} {reason}", file=sys.stderr)
    for name in ("dds", "pipeline_multiprocess", "ros", "pipeline_multiprocess_ros"):
        fig = report[name]
        figures = fig.get("unavailable") or f"p50 {fig['p50_ms']:.3f} ms  p99 {fig['p99_ms']:.3f} ms"
        print(f"{name:10s} {figures}", file=sys.stderr)
    return 0


def policy_lines(pol: dict) -> list[str]:
    """The policy figures as table rows; a runtime that could not be measured says why."""
    lines = []
    for name in ("openvino", "openvino_int8", "onnxruntime"):
        fig = pol[name]
        figures = fig.get("unavailable") or f"p50 {fig['p50_ms']:.3f} ms  p99 {fig['p99_ms']:.3f} ms"
        lines.append(f"policy     {name:13s} {figures}")
    if "gate" in pol["openvino_int8"]:
        gate = pol["openvino_int8"]["gate"]
        lines.append(f"           INT8 chooses the f32 action on {gate['agreement']:.1%} of {gate['frames']} "
                     "simulator frames")
    return lines
