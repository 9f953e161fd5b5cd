"""Hostile models and resource exhaustion over the console (issue 26): each hostile archive of the
issue is uploaded to a driving car while a probe sends the emergency stop on a fresh connection
every 100 ms; then strangers on many loopback addresses hold the connection cap while the owner
works, and a teleop socket floods pings. The car is the simulated one of tests/browser/harness.py,
on the local transport, in this process: "the car survives" is this process's peak RSS staying
small and every probe being answered. Deadlines asserted are generous (the issue measured 28-37 s
stalls); the measured figures are printed."""
from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import io
import json
import logging
import os
import resource
import socket
import statistics
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from browser.harness import STRAIGHT, Car, racer_bundle, start_car
from car.console.uploads import UploadLimits
from hostile_models import fill_graph, huge_const_graph, many_nodes_graph
from model_factory import PPO_TAR, metadata_bytes
from test_console_uploads import multipart, tar_gz, token

ESTOP_DEADLINE_S = 1.0
MAX_REASON = 300


@pytest.fixture(scope="module")
def car(tmp_path_factory):
    """A car with the console's real upload limits (64 MiB unpacked), driving a straight model."""
    root = tmp_path_factory.mktemp("exhaustion")
    car = start_car(root, racer_bundle(root / "models", "driving", STRAIGHT), limits=UploadLimits())
    yield car
    car.stop()


@dataclass
class Probe:
    """The emergency stop on a fresh connection to the console on `port` every `period_s`:
    (seconds to the answer, status) each."""

    port: int
    bearer: str
    period_s: float = 0.1
    answers: list[tuple[float, int]] = field(default_factory=list)
    source: str = "127.0.0.1"

    def once(self) -> None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        try:
            conn.request("POST", "/api/emergency_stop", headers={"Authorization": f"Bearer {self.bearer}"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            conn.close()
        self.answers.append((time.monotonic() - started, status))

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.once()
                stop.wait(self.period_s)

        thread = threading.Thread(target=loop, name="estop-probe")
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def figures(self) -> str:
        times = sorted(t * 1000 for t, _ in self.answers)
        return (f"{len(times)} e-stops, median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms"
                if times else "no e-stops")

    def check(self, deadline_s: float = ESTOP_DEADLINE_S) -> None:
        assert self.answers, "the probe never ran"
        assert all(status == 200 for _, status in self.answers), self.answers
        assert max(t for t, _ in self.answers) < deadline_s, self.figures()


def drive(car: Car) -> None:
    client = car.client()
    assert client.request("POST", "/api/drive_mode", {"drive_mode": "auto"}).status == 200
    assert client.request("POST", "/api/start_stop", {"start_stop": "start"}).status == 200
    car.wait_for(lambda: car.status()["command"]["throttle"] > 0, what="the car driving")


def upload(port: int, bearer: str, filename: str, content: bytes) -> tuple[int, dict]:
    body, content_type = multipart(filename, content)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/api/uploadModels", body, {"Content-Type": content_type,
                                                         "Authorization": f"Bearer {bearer}"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def gnu_tar_gz(infos: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in infos:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def zeros_pb_bomb(size: int) -> bytes:
    """model.pb of `size` zero bytes, gzip'd as it streams: ~1/1000 of `size`, never all in memory."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        meta = metadata_bytes()
        for name, length in (("model_metadata.json", len(meta)), ("model.pb", size)):
            info = tarfile.TarInfo(name)
            info.size = length
            gz.write(info.tobuf(tarfile.GNU_FORMAT))
            if name == "model.pb":
                chunk = bytes(1 << 20)
                for offset in range(0, size, len(chunk)):
                    gz.write(chunk[:min(len(chunk), size - offset)])
            else:
                gz.write(meta)
            gz.write(bytes(-length % 512))
        gz.write(bytes(1024))
    return out.getvalue()


def folder(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


def hostile_archives() -> dict[str, tuple[bytes, str]]:
    """The issue's hostile uploads, built small: name -> (archive bytes, a phrase of the refusal)."""
    meta = metadata_bytes()
    return {
        "3 GiB Const in 579 bytes": (tar_gz({"model.pb": huge_const_graph(), "model_metadata.json": meta}),
                                     "declares a constant of over 3.0 GiB"),
        "3 GiB Fill (memory cap)": (tar_gz({"model.pb": fill_graph(805306370), "model_metadata.json": meta}),
                                    "needs more than the car's"),
        "6000 nodes": (tar_gz({"model.pb": many_nodes_graph(6000), "model_metadata.json": meta}),
                       "more than 5000 nodes"),
        "gzip to 64 MiB + 1": (zeros_pb_bomb((64 << 20) + 1), "unpacks to more than"),
        "macOS litter headers": (gnu_tar_gz([(tarfile.TarInfo(f"._{i}"), b"") for i in range(3000)]),
                                 "more than 1000 members"),
        "1 MiB member name": (gnu_tar_gz([(tarfile.TarInfo("n" * (1 << 20)), b"x")]), "long-name or pax header"),
        "2000-deep directory": (gnu_tar_gz([folder("a/" * 2000)]), "name over 1024 bytes"),
        "500-deep directory": (gnu_tar_gz([folder("a/" * 500)]), "nested 500 deep"),
    }


def test_hostile_uploads_are_refused_shortly_while_the_emergency_stop_answers(car, caplog):
    caplog.set_level(logging.INFO)
    bearer = token(car)
    client = car.client()
    figures = {}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, (archive, phrase) in hostile_archives().items():
        drive(car)
        probe = Probe(car.port, bearer)
        with probe.running():
            status, body = upload(car.port, bearer, "hostile.tar.gz", archive)
        figures[name] = (len(archive), probe.figures())
        assert 400 <= status < 500 and phrase in body["reason"], (name, status, body)
        assert len(body["reason"]) <= MAX_REASON, name
        loading = client.request("GET", "/api/isModelLoading").body
        assert loading["isModelLoading"] == "error" and loading["reason"] == body["reason"], name
        assert len(json.dumps(client.request("GET", "/api/status").body)) < 4000, name
        probe.check()
        assert list(car.state.uploads.iterdir()) == [] and not (car.state.models / "hostile").exists(), name
        assert not list((car.state.cache / "ir").glob("*/*")), name  # a refused model leaves no cache
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    print("\nhostile upload (bytes): e-stop probe on fresh connections every 100 ms")
    for name, (size, text) in figures.items():
        print(f"  {name:26s} {size:>9d} B  {text}")
    print(f"  the car process's peak RSS grew {grown_mib:.0f} MiB")
    assert grown_mib < 300  # the 3 GiB allocations happened in the sandbox, not here
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"
    assert max(len(r.getMessage()) for r in caplog.records) < 2000
    drive(car)  # the previous model still drives
    progress = car.sim.info.progress
    car.wait_for(lambda: car.sim.info.progress > progress, what="the car moving on")
    assert car.status()["model"] == "driving"
    client.request("POST", "/api/start_stop", {"start_stop": "stop"})


def test_a_huge_file_name_in_the_upload_is_refused_with_a_short_reason(car):
    status, body = upload(car.port, token(car), "m" * (1 << 20) + ".tar.gz", b"x")
    assert status == 400 and "header size" in body["reason"] and len(body["reason"]) < 100, (status, body)
    status, body = upload(car.port, token(car), "m" * 4000 + ".tar.gz", b"x")
    assert status == 400 and len(body["reason"]) <= MAX_REASON, (status, body)


@pytest.mark.parametrize("which", ["ppo fixture", "aws 23 MB"])
def test_a_real_model_installs_while_the_emergency_stop_answers(car, which, request):
    """The issue measured a 292 ms e-stop stall installing a real 21 MB AWS model in-process."""
    if which == "ppo fixture":
        archive, filename = PPO_TAR.read_bytes(), "fixture.tar.gz"
    else:
        sample = request.getfixturevalue("sample_model") / "model"
        archive = tar_gz({"model.pb": (sample / "model_48.pb").read_bytes(),
                          "model_metadata.json": (sample / "model_metadata.json").read_bytes()})
        filename = "aws.tar.gz"
    bearer = token(car)
    drive(car)
    probe = Probe(car.port, bearer)
    started = time.monotonic()
    with probe.running():
        status, body = upload(car.port, bearer, filename, archive)
    took = time.monotonic() - started
    print(f"\n{which} ({len(archive) >> 10} KiB) installed in {took:.1f} s while driving: {probe.figures()}")
    assert status == 200, body
    probe.check()
    folder = body["model_folder_name"]
    load = Probe(car.port, bearer)
    with load.running():
        assert car.client().request("PUT", f"/api/models/{folder}/model").status == 200
    print(f"{which} loaded: {load.figures()}")
    load.check()
    assert car.client().request("PUT", "/api/models/driving/model").status == 200
    assert car.client().request("POST", "/api/deleteModels", {"filenames": [folder]}).status == 200


# lock-out -----------------------------------------------------------------------------------------

def test_strangers_on_many_addresses_cannot_lock_the_owner_out(car):
    """10 addresses x 30 silent sockets (each under the per-address cap, 300 in all against a cap of
    128), reopened as they close, while the owner's e-stop and page keep working on new connections."""
    bearer = token(car)
    cookie, _ = car.login()
    stop = threading.Event()
    opened = [0]

    def hold(source: str) -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            for sock in list(held):
                try:
                    sock.setblocking(False)
                    gone = sock.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    sock.close()
                    held.remove(sock)
            while len(held) < 30 and not stop.is_set():
                try:
                    held.append(socket.create_connection(("127.0.0.1", car.port), timeout=2,
                                                         source_address=(source, 0)))
                    opened[0] += 1
                except OSError:
                    break
            stop.wait(0.05)
        for sock in held:
            sock.close()

    strangers = [threading.Thread(target=hold, args=(f"127.0.0.{n}",)) for n in range(2, 12)]
    for thread in strangers:
        thread.start()
    estops, pages = Probe(car.port, bearer), []
    try:
        time.sleep(1.0)
        for _ in range(30):
            estops.once()
            page = http.client.HTTPConnection("127.0.0.1", car.port, timeout=30)
            started = time.monotonic()
            try:
                page.request("GET", "/", headers={"Cookie": cookie, "Accept": "text/html"})
                response = page.getresponse()
                pages.append((time.monotonic() - started, response.status, b"csrf-token" in response.read()))
            except OSError as exc:
                pages.append((time.monotonic() - started, 0, str(exc)))
            finally:
                page.close()
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in strangers:
            thread.join()
    print(f"\n{opened[0]} stranger connections opened; owner: {estops.figures()}; "
          f"page max {max(t for t, _, _ in pages) * 1000:.1f} ms")
    assert opened[0] > 300
    estops.check(deadline_s=2.0)  # the strangers' churn (thousands of connections a second) loads the loop
    assert all(status == 200 and ok for _, status, ok in pages), pages


def test_an_authenticated_connection_is_never_evicted_for_a_stranger(car):
    """150 silent strangers in 10 address blocks fill the cap of 128: the owner's authenticated
    keep-alive connection is kept, and so is the owner's way in on new connections."""
    bearer = {"Authorization": f"Bearer {token(car)}"}
    owner = http.client.HTTPConnection("127.0.0.1", car.port, timeout=30)
    owner.request("GET", "/api/server_ready", headers=bearer)
    owner.getresponse().read()
    strangers = [socket.create_connection(("127.0.0.1", car.port), source_address=(f"127.{block}.0.1", 0))
                 for block in range(2, 12) for _ in range(15)]
    try:
        time.sleep(0.3)
        owner.request("GET", "/api/status", headers=bearer)
        assert owner.getresponse().status == 200  # the same keep-alive connection survived the flood
        assert car.request("GET", "/api/status", headers=bearer)[0] == 200
    finally:
        owner.close()
        for sock in strangers:
            sock.close()


# WebSocket flow control ------------------------------------------------------------------------------

def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _teleop_socket(car: Car, bearer: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", car.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/teleop HTTP/1.1\r\nHost: 127.0.0.1:{car.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {bearer}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _ping(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x89, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_ping_flood_closes_the_socket_and_memory_stays_bounded(car):
    bearer = token(car)
    before = _rss_mib()
    sock = _teleop_socket(car, bearer)
    frame = _ping(os.urandom(125))
    burst = frame * 512
    sent, ended = 0, None
    started = time.monotonic()
    try:
        while time.monotonic() - started < 10:
            sock.sendall(burst)  # never reading: the pongs back up on the car
            sent += len(burst)
    except OSError as exc:
        ended = type(exc).__name__
    finally:
        sock.close()
    grown = _rss_mib() - before
    print(f"\nping flood: {sent >> 10} KiB of pings sent before the car closed the socket ({ended}); "
          f"car RSS grew {grown:.1f} MiB")
    assert ended is not None and sent < (64 << 20)
    assert grown < 50
    with car.client().websocket("/api/teleop") as ws:  # a well-behaved driver still gets in
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        ws.ping()  # one ping a second is fine
        ws.send('{"estop": true}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "estop"}
