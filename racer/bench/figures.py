"""`racer bench`: the README's performance figures, all measured in one run on one machine."""
from __future__ import annotations

import importlib.util
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from racer.bench.stats import percentiles


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, block: int, warmup: int = 50,
                settle_s: float = 0.05) -> dict[str, list[float]]:
    """Time several callables in alternating blocks, so machine noise hits each alike.

    Each block starts after `settle_s` of quiet: onnxruntime's worker threads spin for a while
    after a run, and would otherwise slow whichever block comes next (measured: OpenVINO p50
    0.98 ms right after onnxruntime blocks vs 0.51 ms after a pause).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle_s)
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return samples


def bench_policy(rounds: int = 20, block: int = 50, gate_frames: int = 1000) -> dict[str, Any]:
    """The DeepRacer reference network under OpenVINO f32 (the car's config), OpenVINO INT8 and
    onnxruntime, same input.

    INT8 is NNCF's quantization of every layer, calibrated on simulator frames as `racer model
    convert --int8` does, with the equivalence gate's figures beside it. The accuracy control that
    `convert` adds is left out: on this network it reverts four of five layers to f32 to gain half
    a percent of validation agreement, and would time a mostly f32 network. Without NNCF (the int8
    extra) the INT8 figure is `{"unavailable": reason}`.
    """
    import onnxruntime as ort
    import openvino as ov

    from car.policy.inference import compile_config
    from racer.bench.reference_net import INPUT_SHAPE, build_reference_onnx, reference_metadata, reference_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = build_reference_onnx(Path(tmp) / "reference.onnx")
        x = np.random.default_rng(1).integers(0, 256, INPUT_SHAPE).astype(np.float32)
        core = ov.Core()
        models: dict[str, Any] = {"openvino": str(path)}
        gate = None
        if _nncf_installed():
            from racer.model.quantize import quantize_gated

            models["openvino_int8"], gate = quantize_gated(
                core.read_model(path), reference_spec(), reference_metadata(),
                calibration_frames=min(300, gate_frames), validation_frames=0, gate_frames=gate_frames)
        requests = {}
        for name, model in models.items():
            requests[name] = core.compile_model(model, "CPU", compile_config(None)).create_infer_request()
            requests[name].set_input_tensor(ov.Tensor(x, shared_memory=True))
            requests[name].infer()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        diff = float(np.abs(requests["openvino"].get_output_tensor().data - session.run(None, feed)[0]).max())
        samples = interleaved({**{name: request.infer for name, request in requests.items()},
                               "onnxruntime": lambda: session.run(None, feed)}, rounds, block)
    out: dict[str, Any] = {name: percentiles(s) for name, s in samples.items()}
    out["max_abs_diff"] = diff
    out["openvino"]["config"] = compile_config(None)
    if gate is None:
        out["openvino_int8"] = {"unavailable": NO_NNCF}
    else:
        out["openvino_int8"]["gate"] = gate.to_json()
    return out


NO_NNCF = "NNCF is not installed: pip install -e '.[bench]' in the repository (make train brings it)"


def _nncf_installed() -> bool:
    try:
        import nncf  # noqa: F401  (the int8 extra)
    except ImportError:
        return False
    return True


class _TimedDriver:
    """Actuator driver that stamps when a command arrives: the end of the pipeline."""

    def __init__(self) -> None:
        self.last = 0.0

    def set(self, steering: float, throttle: float) -> None:
        self.last = time.perf_counter()

    def neutral(self) -> None:
        self.last = time.perf_counter()

    def close(self) -> None:
        pass


@contextmanager
def _timed_graph(model_path: Path) -> Iterator[tuple[Any, Callable[[], float]]]:
    """The in-process car graph with a bundle on recorded simulator frames: (graph, frame), where `frame()`
    runs one camera frame through the graph by hand and returns camera frame in -> actuator command out (s)."""
    from car.clock import SimClock
    from car.graph.stack import CarGraph
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    sim = Simulator(Track.load("reinvent_base"))
    images = []
    for i in range(60):
        sim.reset(start_index=i * sim.track.waypoint_count // 60)
        images.append(sim.render())
    clock = SimClock()
    start = {"t": 0.0}

    class Source:
        def __init__(self) -> None:
            self.i = 0

        def read(self) -> tuple[np.ndarray, float]:
            start["t"] = time.perf_counter()
            self.i += 1
            clock.set(self.i / 15.0)
            return images[self.i % len(images)], clock.now()

    with load_bundle(model_path) as bundle:
        driver = _TimedDriver()
        graph = CarGraph(clock, Source(), driver, Policy(bundle).model())
        graph.control.request("set_mode", "autonomous")
        graph.control.request("start")

        def frame() -> float:
            graph.camera.node.spin_once()
            return driver.last - start["t"]
        try:
            yield graph, frame
        finally:
            graph.close()


def bench_pipeline(model_path: Path, frames: int = 600) -> dict[str, Any]:
    """Camera frame in -> actuator command out through the in-process car stack with a bundle."""
    with _timed_graph(model_path) as (_, frame):
        for _ in range(30):
            frame()
        return percentiles([frame() for _ in range(frames)])


class _Viewer:
    """A Foxglove client subscribed to every channel, reading on a thread of its own until closed."""

    def __init__(self, port: int) -> None:
        from racer.bench.foxglove import FoxgloveClient

        self.client = FoxgloveClient(f"ws://127.0.0.1:{port}")
        self.client.wait_for_channels({"/camera/image_raw/compressed", "/policy/input", "/drive"})
        self.client.subscribe()
        self.messages = 0
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                self.client.next_message(timeout_s=30.0)
                self.messages += 1
                self.first.set()
        except Exception:  # closed: the reading is over
            return

    def close(self) -> None:
        self.client.close()
        self.thread.join(timeout=5.0)


def bench_foxglove(model_path: Path, frames: int = 600, rounds: int = 3) -> dict[str, Any]:
    """The pipeline figure with the Foxglove view on the graph's bus, without a client and with one subscribed
    to every channel (reading all it gets), in alternating blocks so machine noise hits both alike."""
    from car.foxglove.node import SDK_MISSING, FoxgloveNode

    if importlib.util.find_spec("foxglove") is None:
        return {"unavailable": SDK_MISSING}
    samples: dict[str, list[float]] = {"without_client": [], "with_client": []}
    received = 0
    block = max(1, frames // rounds)
    with _timed_graph(model_path) as (graph, frame):
        node = FoxgloveNode(graph.bus, "127.0.0.1", 0)
        try:
            for _ in range(30):
                frame()
            for _ in range(rounds):
                for name in samples:
                    viewer = _Viewer(node.port) if name == "with_client" else None
                    if viewer is not None:
                        while not viewer.first.wait(0.01):  # the subscription is live before the clock starts
                            frame()
                    time.sleep(0.05)
                    samples[name] += [frame() for _ in range(block)]
                    if viewer is not None:
                        time.sleep(0.2)  # what is on its way still counts as received
                        viewer.close()
                        received += viewer.messages
        finally:
            node.close()
    # client_messages: what the viewer received; view_messages: the bus messages the view took in, both phases
    return {**{name: percentiles(s) for name, s in samples.items()}, "client_messages": received,
            "view_messages": node.sent}


def bench_sim(seconds: float) -> dict[str, Any]:
    """Simulator step + camera render at 160x120 with the expert driving (the training loop), nominal
    and with the default domain-randomization preset."""
    from sim2real.randomize import bench_sim_randomized

    nominal = bench_sim_randomized(seconds, preset="none")
    randomized = bench_sim_randomized(seconds, preset="default")
    return {"steps_per_s": nominal["steps_per_s"], "width": nominal["width"], "height": nominal["height"],
            "randomized": {"preset": "default", "steps_per_s": randomized["steps_per_s"]}}


def bench_train(frames: int = 3000, episode_steps: int = 100) -> dict[str, Any]:
    """DAgger rollout frames per second (the expert drives; each frame rendered, preprocessed and
    labelled, gathered in episode order) in this process and on 1 and 2 Ray workers of a private
    local instance, all in this run. Warm-up episodes first: worker start-up is not counted.
    Without Ray installed (the train extra), the worker figures are `{"unavailable": reason}`."""
    from dataclasses import replace

    from sim2real.imitation import Dataset, EpisodeSource, ImitationConfig, Rollouts, collect
    from sim2real.training_defaults import SPEC

    cfg = ImitationConfig(steps_per_iteration=frames, episode_steps=episode_steps)

    def rate(source: EpisodeSource, workers: int) -> float:
        source.set_learner(None)
        collect(replace(cfg, steps_per_iteration=workers * episode_steps), source, 0, 1.0, Dataset(SPEC.input_shape()))
        t0 = time.perf_counter()
        collect(cfg, source, 1, 1.0, Dataset(SPEC.input_shape()))
        return round(frames / (time.perf_counter() - t0), 1)

    report: dict[str, Any] = {"in_process": rate(Rollouts(cfg), 1), "frames": frames, "episode_steps": episode_steps}
    if importlib.util.find_spec("ray") is None:
        report["frames_per_s"] = {"unavailable": "Ray is not installed: pip install 'racer[train]'"}
        return report
    from sim2real.distributed import WorkerRollouts, ray_workers

    with ray_workers(None, 2):
        report["frames_per_s"] = {str(n): rate(WorkerRollouts(cfg, n), n) for n in (1, 2)}
    return report


def bench_ppo(steps: int = 2000) -> dict[str, Any]:
    """PPO as the console trains (`sim2real.ppo`): environment steps per second of wall time with the
    console's network (DEEP_CONVOLUTIONAL_NETWORK_SHALLOW on 160x120 grey), action space and default
    hyperparameters (10 epochs, batch 64, 20 episodes per update), updates and the 5 evaluation
    episodes included, on reinvent_base with the centre-line reward, from a fresh network; and where
    the time went. Then the same run with bfloat16 updates (`--precision bf16`). Gazebo, for
    comparison, steps at 15 per second."""
    from sim2real.ppo import PPOConfig, train_ppo

    def run(precision: str) -> tuple[float, list[dict[str, Any]]]:
        t0 = time.perf_counter()
        history = train_ppo(PPOConfig(timesteps=steps, precision=precision), show_progress=False).history
        return time.perf_counter() - t0, history

    wall, history = run("fp32")
    parts = {f"{part}_s": round(sum(h[f"{part}_s"] for h in history), 2) for part in ("collect", "update", "eval")}
    bf16_wall, _ = run("bf16")
    return {"ppo_env_steps_per_s": round(steps / wall, 1), "ppo_steps": steps, "ppo_iterations": len(history),
            "ppo_wall_s": round(wall, 1), "ppo_time": parts, "ppo_bf16_env_steps_per_s": round(steps / bf16_wall, 1)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def bench_transports(model_path: Path, scale: float) -> dict[str, Any]:
    """Image latency between two processes (`dds`, `ros`) and camera -> /drive across node processes
    (`pipeline_multiprocess`, `pipeline_multiprocess_ros`). Without rclpy (no `make ros`) the two ros
    figures are `{"unavailable": reason}`."""
    from car.transport.ros import RosUnavailable
    from racer.bench.dds import bench_dds, bench_multiprocess

    messages, frames = max(60, int(300 * scale)), max(30, int(150 * scale))
    report = {"dds": bench_dds(messages), "pipeline_multiprocess": bench_multiprocess(model_path, frames)}
    try:
        report["ros"] = bench_dds(messages, transport="ros")
        report["pipeline_multiprocess_ros"] = bench_multiprocess(model_path, frames, transport="ros")
    except RosUnavailable as exc:
        report["ros"] = report["pipeline_multiprocess_ros"] = {"unavailable": str(exc)}
    return report


def run_bench(model_path: Path, quick: bool = False,
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure, one after the other; `progress` is told what is measured next."""
    from racer.bench.flood import bench_safety
    from sim2real.augment import bench_augment

    scale = 0.2 if quick else 1.0
    figures: list[tuple[str, str, Callable[[], Any]]] = [
        ("policy", "policy inference (OpenVINO f32 and INT8, onnxruntime)",
         lambda: bench_policy(rounds=max(2, int(20 * scale)), gate_frames=200 if quick else 1000)),
        ("pipeline", "the camera-to-actuator pipeline",
         lambda: bench_pipeline(model_path, frames=max(60, int(600 * scale)))),
        ("foxglove", "the pipeline with a Foxglove client connected and without",
         lambda: bench_foxglove(model_path, frames=max(60, int(600 * scale)))),
        ("sim", "simulator steps/s", lambda: bench_sim(seconds=2.0 * scale)),
        ("augment", "augmentation images/s", lambda: bench_augment(seconds=2.0 * scale)),
        ("train", "DAgger rollouts in process and on 1 and 2 Ray workers, PPO with the console's network (float32 and "
                  "bfloat16 updates)",
         lambda: {**bench_train(frames=max(600, int(3000 * scale))), **bench_ppo(steps=200 if quick else 2000)}),
        ("", "image latency over DDS and rclpy, the pipeline across processes",
         lambda: bench_transports(model_path, scale)),
        ("safety", "neutral and e-stop under a connection flood, per transport", lambda: bench_safety(model_path)),
    ]
    report: dict[str, Any] = {}
    for number, (key, what, measure) in enumerate(figures, 1):
        progress(f"measuring {what} ({number}/{len(figures)})")
        figure = measure()
        report.update({key: figure} if key else figure)
    report["machine"] = machine()
    return report
