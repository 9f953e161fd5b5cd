"""`racer soak`: the simulated car with its console, driven by a client loop for minutes or hours, measured.

The car is `racer car --transport T --sim TRACK --console` in its own processes. The client loop, over
HTTP and WebSocket only, repeats: autonomous drive, emergency stop (its latency: the POST returns once
control has latched it), upload a model, load it, drive it, load the start-up model back, delete the
upload, teleop over the WebSocket (then drop it), the calibration wizard (enter, read, hold a pulse,
save the same values), stream the camera for a moment, log in and out of a browser session, and open
and drop half-sent connections. A sampler reads every process of the car (RSS, open descriptors,
threads), the state dir's size and the pipeline latency (/api/status latency_ms) every few seconds.

Report (one JSON object): {"transport", "minutes", "cycles", "errors", "processes": {name: {"rss_mb":
[median over the baseline minute, over the last minute], "rss_growth_pct", "fds": [fewest open in each],
"fd_growth", "fds_max", "threads": [fewest in each]}}, "state_dir_bytes":
{"start", "baseline", "last", "end", "growth"} (baseline and last: the fewest bytes in those minutes,
between an upload and its delete), "estop_ms": {"n", "p50", "p99", "max"}, "pipeline_ms": {"n", "p50", "p99"},
"baseline_s", "load": [at start, at end], "plot"}. The baseline is the 5th minute (the first fifth of
runs under 10 minutes), so start-up allocations are not counted as growth; the sampler runs beside the
client loop, so a minute's fewest descriptors is the resting count (requests in flight come and go).
"""
from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from car.config import DEFAULT_MODEL
from car.transport.ros import loopback_ros_environment
from racer.laptop.client import CarAddress, CarClient, ClientError, KnownCars

PASSWORD = "soak-pass-phrase-22"
BUNDLE_FILES = ("model.xml", "model.bin", "model_metadata.json", "racer.json")
UPLOAD = "soak_model"
BASELINE_S = 300.0
WINDOW_S = 60.0  # growth compares the minute after the baseline with the last minute (median RSS, fewest fds)
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)
    processes: dict[str, list[tuple[float, float, int, int]]] = field(default_factory=dict)  # (t, rss MB, fds, threads)
    state_bytes: list[tuple[float, int]] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)
    estop_ms: list[tuple[float, float]] = field(default_factory=list)


def _tree(pid: int) -> dict[str, Any]:
    """The car's process ("car": the supervisor, or the whole car on `local`) and its node processes by name."""
    import psutil

    root = psutil.Process(pid)
    named = {"car": root}
    for proc in root.children(recursive=True):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if "node" in argv[:-1]:  # not a model check, nor a child between its fork and its exec
            named[argv[argv.index("node") + 1]] = proc
    return named


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


class Soak:
    def __init__(self, transport: str, minutes: float, out: Path, track: str = "reinvent_base",
                 sample_s: float = 5.0, domain: int | None = None):
        self.transport, self.minutes, self.out, self.track, self.sample_s = transport, minutes, out, track, sample_s
        self.domain = domain if domain is not None else random.randint(1, 230)
        self.work = out / f"soak-{transport}"
        self.state = self.work / "state"
        self.samples = Samples()
        self.errors: list[str] = []
        self.cycles = 0
        self._stop = threading.Event()
        self._started = 0.0

    # --- the car -------------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**loopback_ros_environment(), "ROS_DOMAIN_ID": str(self.domain)}

    def _start_car(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        racer = [sys.executable, "-m", "racer.cli"]
        subprocess.run([*racer, "passwd", "--state-dir", str(self.state)], input=f"{PASSWORD}\n", text=True,
                       check=True, capture_output=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        with open(self.work / "car.log", "w") as log:
            self.car = subprocess.Popen([*racer, "car", "--transport", self.transport, "--sim", self.track,
                                         "--console", f"127.0.0.1:{self.port}", "--state-dir", str(self.state)],
                                        stdout=log, stderr=subprocess.STDOUT, env=self._env())
        self.client = self._client()
        deadline = time.monotonic() + 180
        while not self._answers(self.client):
            if self.car.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the car did not start:\n{(self.work / 'car.log').read_text()[-3000:]}")
            time.sleep(0.5)

    def _client(self) -> CarClient:
        return CarClient(CarAddress.parse(f"http://127.0.0.1:{self.port}"), lambda: PASSWORD, lambda _: None,
                         KnownCars(self.work / "cars.json"))

    @staticmethod
    def _answers(client: CarClient) -> bool:
        try:
            return client.request("GET", "/api/status").body.get("mode") is not None
        except (ClientError, OSError):
            return False

    def _stop_car(self) -> None:
        self.car.send_signal(signal.SIGTERM)
        try:
            self.car.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.car.kill()
            self.car.wait()

    # --- the sampler ---------------------------------------------------------------------------------

    def _sample_loop(self) -> None:
        client = self._client()
        while not self._stop.wait(self.sample_s):
            self._sample(client)

    def _sample(self, client: CarClient) -> None:
        import psutil

        t = time.monotonic() - self._started
        self.samples.times.append(t)
        for name, proc in _tree(self.car.pid).items():
            try:
                with proc.oneshot():
                    row = (t, proc.memory_info().rss / 2**20, proc.num_fds(), proc.num_threads())
            except psutil.Error:
                continue
            self.samples.processes.setdefault(name, []).append(row)
        self.samples.state_bytes.append((t, _dir_bytes(self.state)))
        try:
            latency = client.request("GET", "/api/status").body.get("latency_ms")
        except (ClientError, OSError) as exc:
            self._error("status", exc)
            return
        if latency is not None:
            self.samples.pipeline_ms.append(float(latency))

    # --- the client loop ----------------------------------------------------------------------------

    def _error(self, step: str, exc: BaseException) -> None:
        self.errors.append(f"{time.monotonic() - self._started:.0f} s {step}: {type(exc).__name__}: {exc}"[:300])

    def _ok(self, method: str, path: str, payload: dict | None = None) -> dict:
        answer = self.client.request(method, path, payload)
        if answer.status != 200:
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.body}")
        return answer.body

    def _drive(self, seconds: float) -> None:
        self._ok("POST", "/api/drive_mode", {"drive_mode": "auto"})
        self._ok("POST", "/api/start_stop", {"start_stop": "start"})
        self._stop.wait(seconds)

    def _estop(self) -> None:
        started = time.monotonic()
        self._ok("POST", "/api/emergency_stop")
        self.samples.estop_ms.append((started - self._started, (time.monotonic() - started) * 1000.0))

    def _models(self) -> tuple[str, str]:
        """(folder, model name) of the start-up model."""
        startup = next(m for m in self._ok("GET", "/api/models")["models"] if m["startup"])
        return startup["model_folder_name"], startup["model_name"]

    def _upload_cycle(self, archive: Path) -> None:
        answer = self.client.upload(archive, lambda sent, total: None)
        if answer.status != 200:
            raise RuntimeError(f"upload: {answer.status} {answer.body}")
        self._ok("PUT", f"/api/models/{UPLOAD}/model")
        self._drive(1.0)
        folder, name = self._models()
        self._ok("PUT", f"/api/models/{folder}/{name}")
        self._ok("POST", "/api/deleteModels", {"filenames": [UPLOAD]})

    def _teleop(self) -> None:
        self._ok("POST", "/api/drive_mode", {"drive_mode": "manual"})
        with self.client.websocket("/api/teleop") as ws:
            for i in range(20):
                ws.send(json.dumps({"steering": 0.2 * ((i % 5) - 2) / 2, "throttle": 0.3}))
                time.sleep(0.05)
        # closed without letting go: the console's deadman stops the car

    def _calibrate(self) -> None:
        self._ok("POST", "/api/start_stop", {"start_stop": "stop"})
        self._ok("POST", "/api/set_calibration_mode")
        angle = self._ok("GET", "/api/get_calibration/angle")
        self._ok("POST", "/api/adjust_calibrating_wheels/angle", {"pwm": angle["mid"]})
        self._ok("POST", "/api/set_calibration/angle", {k: angle[k] for k in ("min", "mid", "max", "polarity")})

    def _camera(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/camera.mjpg", headers={"Authorization": f"Bearer {self.client._token()}"})
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"camera stream: {response.status}")
            response.read(256 << 10)
        finally:
            conn.close()

    def _login_logout(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/login", body=f"password={PASSWORD}",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie", "").split(";")[0]
            if not cookie:
                raise RuntimeError(f"login: {response.status} without a session")
            conn.request("GET", "/", headers={"Cookie": cookie})
            page = conn.getresponse().read().decode("utf-8", "replace")
            csrf = CSRF.search(page)
            conn.request("POST", "/logout", headers={"Cookie": cookie, "X-CSRFToken": csrf.group(1) if csrf else ""})
            answer = conn.getresponse()
            answer.read()
            if answer.status >= 400:
                raise RuntimeError(f"logout: {answer.status}")
        finally:
            conn.close()

    def _drop_connections(self) -> None:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"POST /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")

    def _cycle(self, archive: Path) -> None:
        steps = [("drive", lambda: self._drive(2.0)), ("estop", self._estop),
                 ("upload", lambda: self._upload_cycle(archive)), ("estop", self._estop), ("teleop", self._teleop),
                 ("calibrate", self._calibrate),
                 ("camera", self._camera), ("login", self._login_logout), ("drop", self._drop_connections)]
        for step, action in steps:
            if self._stop.is_set():
                return
            try:
                action()
            except Exception as exc:  # a failed step is counted and the loop goes on
                self._error(step, exc)
        self.cycles += 1

    def run(self) -> dict[str, Any]:
        from car.policy.archive import write_tar_gz

        load_start = os.getloadavg()[0]
        self._start_car()
        archive = write_tar_gz(self.work / f"{UPLOAD}.tar.gz", {f: DEFAULT_MODEL / f for f in BUNDLE_FILES})
        self._started = time.monotonic()
        self._sample(self._client())
        sampler = threading.Thread(target=self._sample_loop, name="soak sampler", daemon=True)
        sampler.start()
        deadline = self._started + self.minutes * 60.0
        try:
            while time.monotonic() < deadline and self.car.poll() is None:
                self._cycle(archive)
        finally:
            self._stop.set()
            sampler.join()
            self._sample(self._client())
            alive = self.car.poll() is None
            self._stop_car()
        if not alive:
            self.errors.append(f"the car exited during the soak (status {self.car.returncode})")
        (self.work / "samples.json").write_text(json.dumps(vars(self.samples)))
        return self.report(load_start)

    # --- the report ----------------------------------------------------------------------------------

    def report(self, load_start: float) -> dict[str, Any]:
        duration = self.samples.times[-1] if self.samples.times else 0.0
        baseline = BASELINE_S if duration >= 2 * BASELINE_S else duration / 5.0
        window = min(WINDOW_S, duration / 5.0)
        processes = {}
        for name, rows in sorted(self.samples.processes.items()):
            first = [r for r in rows if baseline <= r[0] < baseline + window] or rows[:1]
            last = [r for r in rows if r[0] >= rows[-1][0] - window]
            rss = [statistics.median(r[1] for r in window) for window in (first, last)]
            fds = [min(r[2] for r in window) for window in (first, last)]
            threads = [min(r[3] for r in window) for window in (first, last)]
            processes[name] = {"rss_mb": [round(v, 1) for v in rss],
                               "rss_growth_pct": round(100.0 * (rss[1] - rss[0]) / rss[0], 2),
                               "fds": fds, "fd_growth": fds[1] - fds[0],
                               "fds_max": max(r[2] for r in rows), "threads": threads}
        estops = [ms for _, ms in self.samples.estop_ms]
        state = self.samples.state_bytes
        rest = [min(b for t, b in state if lo <= t < hi) for lo, hi in
                ((baseline, baseline + window), (state[-1][0] - window, state[-1][0] + 1))]
        plot = self.plot(baseline)
        return {"transport": self.transport, "minutes": round(duration / 60.0, 1), "cycles": self.cycles,
                "errors": len(self.errors), "first_errors": self.errors[:10], "processes": processes,
                "state_dir_bytes": {"start": state[0][1], "baseline": rest[0], "last": rest[1], "end": state[-1][1],
                                    "growth": rest[1] - rest[0]},
                "estop_ms": {"n": len(estops), "p50": _percentile(estops, 0.5), "p99": _percentile(estops, 0.99),
                             "max": round(max(estops), 1) if estops else None},
                "pipeline_ms": {"n": len(self.samples.pipeline_ms), "p50": _percentile(self.samples.pipeline_ms, 0.5),
                                "p99": _percentile(self.samples.pipeline_ms, 0.99)},
                "baseline_s": round(baseline, 1), "load": [round(load_start, 2), round(os.getloadavg()[0], 2)],
                "plot": str(plot)}

    def plot(self, baseline: float) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        for name, rows in sorted(self.samples.processes.items()):
            t = [r[0] / 60.0 for r in rows]
            for ax, column in ((axes[0][0], 1), (axes[0][1], 2), (axes[1][0], 3)):
                ax.plot(t, [r[column] for r in rows], label=name)
        axes[1][1].plot([t / 60.0 for t, _ in self.samples.estop_ms], [ms for _, ms in self.samples.estop_ms], ".",
                        label="emergency stop")
        state = self.samples.state_bytes
        twin = axes[1][1].twinx()
        twin.plot([t / 60.0 for t, _ in state], [b / 2**20 for _, b in state], color="grey", label="state dir")
        twin.set_ylabel("state dir (MiB)")
        titles = ("RSS (MiB)", "open descriptors", "threads", "e-stop latency (ms)")
        for ax, title in zip(axes.flat, titles, strict=True):
            ax.set_title(title)
            ax.axvline(baseline / 60.0, color="lightgrey", linestyle="--")
        axes[0][0].legend(fontsize=7)
        for ax in axes[1]:
            ax.set_xlabel("minutes")
        fig.suptitle(f"racer soak, {self.transport} transport ({len(self.samples.estop_ms)} e-stops, "
                     f"{self.cycles} cycles)")
        fig.tight_layout()
        path = self.out / f"soak-{self.transport}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path
