"""The emergency stop's latency while a model uploads and installs into a driving car (issue 26).

Starts `racer car --sim reinvent_base --console` in its own process (so this client never shares
the car's GIL), drives autonomously, and uploads MODEL.tar.gz RUNS times while a probe sends
POST /api/emergency_stop on a fresh connection every 100 ms; each run installs under a new name
into an empty conversion cache, so each converts afresh. Prints one JSON object:
{"runs": [{"status", "estops", "median_ms", "max_ms", "seconds"}], "worst_ms"}.

    .venv/bin/python tools/estop_during_upload.py ~/.cache/racer-tests/.../aws.tar.gz --runs 3

With no MODEL it builds the real 21 MB AWS model the tests use (tests/aws_models.py).
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "estop-probe-password-7"


def aws_archive(work: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from aws_models import sample_model_dir
    from car.policy.archive import write_tar_gz

    model = sample_model_dir() / "model"
    return write_tar_gz(work / "aws.tar.gz", {"model.pb": model / "model_48.pb",
                                              "model_metadata.json": model / "model_metadata.json"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, headers: dict[str, str], body: bytes | None = None, timeout: float = 600) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def upload_once(port: int, bearer: str, archive: bytes) -> dict:
    auth = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    post(port, "/api/drive_mode", auth, b'{"drive_mode": "auto"}')
    post(port, "/api/start_stop", auth, b'{"start_stop": "start"}')
    time.sleep(1.0)
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            post(port, "/api/emergency_stop", {"Authorization": f"Bearer {bearer}"}, timeout=60)
            latencies.append(time.monotonic() - started)
            stop.wait(0.1)

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m{boundary[:8]}.tar.gz\"\r\n"
            "Content-Type: application/gzip\r\n\r\n").encode() + archive + f"\r\n--{boundary}--\r\n".encode()
    thread = threading.Thread(target=probe)
    started = time.monotonic()
    thread.start()
    try:
        status = post(port, "/api/uploadModels", {"Authorization": f"Bearer {bearer}",
                                                  "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    finally:
        stop.set()
        thread.join()
    ms = sorted(t * 1000 for t in latencies)
    return {"status": status, "estops": len(ms), "median_ms": round(statistics.median(ms), 1),
            "max_ms": round(ms[-1], 1), "seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="a model .tar.gz (default: the real AWS model)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from racer.laptop.client import CarAddress, CarClient, KnownCars

    with tempfile.TemporaryDirectory(prefix="estop-probe-") as tmp:
        work = Path(tmp)
        archive = (args.model or aws_archive(work)).read_bytes()
        state = work / "state"
        racer = [sys.executable, "-m", "racer.cli"]
        subprocess.run([*racer, "passwd", "--state-dir", str(state)], input=f"{PASSWORD}\n", text=True, check=True,
                       capture_output=True)
        port = free_port()
        with open(work / "car.log", "w") as log:
            car = subprocess.Popen([*racer, "car", "--sim", "reinvent_base", "--console", f"127.0.0.1:{port}",
                                    "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            client = CarClient(CarAddress.parse(f"http://127.0.0.1:{port}"), lambda: PASSWORD, lambda _: None,
                               KnownCars(work / "cars.json"))
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.request("GET", "/api/server_ready")
                    break
                except Exception:
                    if time.monotonic() > deadline or car.poll() is not None:
                        raise SystemExit(f"the car did not start:\n{(work / 'car.log').read_text()[-2000:]}") from None
                    time.sleep(0.5)
            bearer = client.known.get(client.address.key)["token"]
            runs = []
            for _ in range(args.runs):
                shutil.rmtree(state / "cache", ignore_errors=True)
                runs.append(upload_once(port, bearer, archive))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        finally:
            car.terminate()
            car.wait(timeout=20)
    print(json.dumps({"runs": runs, "worst_ms": max(r["max_ms"] for r in runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
