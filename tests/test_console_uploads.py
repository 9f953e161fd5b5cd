"""Model uploads over the console: real bundles install, hostile or broken ones are refused.

Every refusal is a 4xx with a reason, leaves nothing outside the state directory (and nothing
half-installed inside it), and the selected model keeps driving the simulated car throughout.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from browser.harness import CURVES, STRAIGHT, Car, racer_bundle, start_car
from model_factory import PPO_TAR, SAC_TAR, ir_files, metadata_bytes, nan_model, onnx_model, pb_bytes, write_tar

EVIL = f"racer-evil-{uuid.uuid4().hex}"


def multipart(filename: str, content: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/gzip\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def tar_gz(files: dict[str, bytes], special: Sequence[tarfile.TarInfo] = ()) -> bytes:
    with tempfile.TemporaryDirectory() as work:
        return write_tar(Path(work) / "upload.tar.gz", files, special).read_bytes()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = 1, 3
    return info


class Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.pb")
        info.size = size
        tar.addfile(info, Zeros(size))
    return out.getvalue()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    car = start_car(root, racer_bundle(root / "models", "driving", STRAIGHT))
    work = root / "work"
    good_dir = racer_bundle(work, "curves", CURVES)
    good = {p.name: p.read_bytes() for p in good_dir.iterdir() if p.is_file()}
    yield car, root, good, work
    car.stop()


def upload(car: Car, filename: str, content: bytes, field: str = "file") -> tuple[int, dict]:
    body, content_type = multipart(filename, content, field)
    status, _, data = car.request("POST", "/api/uploadModels", body,
                                  {"Content-Type": content_type, "Authorization": f"Bearer {token(car)}"})
    return status, json.loads(data)


def token(car: Car) -> str:
    car.client().request("GET", "/api/server_ready")
    return car.client().known.get(car.client().address.key)["token"]


def hostile_corpus(good: dict[str, bytes], work: Path) -> dict[str, tuple[str, bytes, str]]:
    """name -> (upload file name, bytes, a phrase the refusal must contain)."""
    meta = json.loads(good["model_metadata.json"])
    ir = {k: good[k] for k in ("model.xml", "model.bin")}
    valid = dict(good)
    wrong_shape = onnx_model(work / "wrong_shape.onnx", (1, 3, 64, 64), 2).read_bytes()
    nan_ir = ir_files(nan_model(2), work / "nan")
    archive = tar_gz(valid)
    incompressible = tar_gz({"model_metadata.json": metadata_bytes(),
                             "model.pb": np.random.default_rng(0).bytes(20_000)})
    corrupt, bad_checksum = bytearray(incompressible), bytearray(archive)
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside the frozen graph's bytes: only the gzip CRC can tell
    bad_checksum[-8] ^= 0xFF
    return {
        "path traversal": ("a.tar.gz", tar_gz({**valid, "../evil.txt": b"x"}), "outside the archive"),
        "nested traversal": ("b.tar.gz", tar_gz({**valid, "sub/../../evil.txt": b"x"}), "outside the archive"),
        "absolute path": ("c.tar.gz", tar_gz({**valid, f"/tmp/{EVIL}": b"x"}), "absolute path"),
        "symlink": ("d.tar.gz", tar_gz(valid, [special("link", tarfile.SYMTYPE, "/etc/passwd")]), "symbolic link"),
        "hard link": ("e.tar.gz", tar_gz(valid, [special("hard", tarfile.LNKTYPE, "/etc/passwd")]), "hard link"),
        "char device": ("f.tar.gz", tar_gz(valid, [special("null", tarfile.CHRTYPE)]), "device"),
        "block device": ("g.tar.gz", tar_gz(valid, [special("disk", tarfile.BLKTYPE)]), "device"),
        "fifo": ("h.tar.gz", tar_gz(valid, [special("pipe", tarfile.FIFOTYPE)]), "FIFO"),
        "gzip bomb": ("i.tar.gz", gzip_bomb((16 << 20) + 1), "unpacks to more than"),
        "tar bomb": ("j.tar.gz", tar_gz({f"f{i}": b"" for i in range(300)}), "more than 200 members"),
        "huge metadata": ("k.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "pad": "x" * (2 << 20)}).encode()}), "limit"),
        "NaN action": ("l.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "action_space": [{"steering_angle": 0, "speed": float("nan")}] * 2}).encode()}), "finite"),
        "infinite steering": ("m.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "action_space": [{"steering_angle": float("inf"), "speed": 1}] * 2}).encode()}), "finite"),
        "two models": ("n.tar.gz", tar_gz({**valid, "model.pb": b"\x00"}), "one model"),
        "two onnx": ("o.tar.gz", tar_gz({**valid, "second.onnx": good["model.onnx"]}), "one model"),
        "no model": ("p.tar.gz", tar_gz({"model_metadata.json": good["model_metadata.json"]}), "no model file"),
        "no metadata": ("q.tar.gz", tar_gz(ir), "missing model_metadata.json"),
        "wrong input shape": ("r.tar.gz", tar_gz({"model.onnx": wrong_shape,
                                                  "model_metadata.json": good["model_metadata.json"]}),
                              "does not match"),
        "not an archive": ("s.tar.gz", b"this is a text file, not a model\n" * 10, "not a .tar.gz"),
        "truncated": ("t.tar.gz", archive[: len(archive) // 2], "truncated"),
        "gzip of text": ("u.tar.gz", gzip.compress(b"plain text " * 200), "no tar"),
        "corrupt gzip": ("v.tar.gz", bytes(corrupt), "corrupt"),
        "bad gzip checksum": ("ag.tar.gz", bytes(bad_checksum), "corrupt"),
        "metadata not json": ("w.tar.gz", tar_gz({**ir, "model_metadata.json": b"{not json"}), "not valid JSON"),
        "unknown action space type": ("x.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "action_space_type": "sideways"}).encode()}), "discrete or continuous"),
        "output count mismatch": ("y.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "action_space": meta["action_space"] * 3}).encode()}), "outputs"),
        "NaN output": ("z.tar.gz", tar_gz({**nan_ir, "model_metadata.json": good["model_metadata.json"]}),
                       "not finite"),
        "lidar model": ("aa.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            {**meta, "sensor": ["FRONT_FACING_CAMERA", "LIDAR"]}).encode()}), "LIDAR"),
        "xml without bin": ("ab.tar.gz", tar_gz({"model.xml": good["model.xml"],
                                                 "model_metadata.json": good["model_metadata.json"]}), "model.bin"),
        "duplicate member": ("ac.tar.gz", tar_gz({**valid}, [special("model_metadata.json", tarfile.REGTYPE)]),
                             "twice"),
        "garbage frozen graph": ("ad.tar.gz", tar_gz({"model.pb": b"garbage" * 50,
                                                      "model_metadata.json": metadata_bytes()}), "frozen graph"),
        "bad racer.json": ("ae.tar.gz", tar_gz({**valid, "racer.json": b'{"format": "other"}'}), "racer.json"),
        # a caution that would speed the car up where it doubts most
        "caution above 1": ("ah.tar.gz", tar_gz({**valid, "racer.json": json.dumps(
            {"format": "racer-bundle", "version": 2, "preprocess": {},
             "caution": {"warning": 0.25, "speed_scale": 1.5}}).encode()}), "caution speed_scale must be in"),
        "huge integer in racer.json": ("ai.tar.gz", tar_gz({**valid, "racer.json": json.dumps(
            {"format": "racer-bundle", "version": 2, "preprocess": {},
             "caution": {"warning": 10**400, "speed_scale": 0.8}}).encode()}), "an integer of 401 digits"),
        "integer past the digit limit": ("aj.tar.gz", tar_gz({**ir, "model_metadata.json": json.dumps(
            meta).encode()[:-1] + b', "version": ' + b"9" * 5000 + b"}"}), "too many digits"),
        "nesting past the stack": ("ak.tar.gz", tar_gz({**valid, "racer.json": b"[" * 100000 + b"]" * 100000}),
                                   "nests too deeply"),
        "empty archive": ("af.tar.gz", tar_gz({}), "no files"),
        "traversal in file name": ("../evil.tar.gz", archive, "path"),
        "not a tar.gz name": ("model.zip", archive, "not a .tar.gz"),
        "hidden folder name": (".hidden.tar.gz", archive, "must be"),
        "too large": ("big.tar.gz", bytes(5 << 20), "limit"),
    }


def snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_hostile_and_broken_uploads_are_refused_and_change_nothing(rig):
    car, root, good, work = rig
    client = car.client()
    assert client.request("POST", "/api/drive_mode", {"drive_mode": "auto"}).status == 200
    assert client.request("POST", "/api/start_stop", {"start_stop": "start"}).status == 200
    corpus = hostile_corpus(good, work)
    assert len(corpus) >= 25
    installed_before = sorted(p.name for p in car.state.models.iterdir())
    before = snapshot(root)
    progress_before = car.sim.info.progress
    for name, (filename, content, phrase) in corpus.items():
        status, body = upload(car, filename, content)
        assert 400 <= status < 500, (name, status, body)
        assert body["success"] is False and phrase.lower() in body["reason"].lower(), (name, body)
        assert sorted(p.name for p in car.state.models.iterdir()) == installed_before, name
        assert list(car.state.uploads.iterdir()) == [], name
        assert client.request("GET", "/api/status").body["model"] == "driving", name
    created_outside = {p for p in snapshot(root) - before if car.state.root not in p.parents}
    assert created_outside == set()
    assert not (Path("/tmp") / EVIL).exists() and not (root.parent / "evil.txt").exists()
    status = client.request("GET", "/api/status").body
    assert status["model"] == "driving" and status["mode"] == "autonomous" and status["running"]
    assert status["command"]["throttle"] > 0 and car.sim.info.progress > progress_before
    client.request("POST", "/api/start_stop", {"start_stop": "stop"})


def test_a_failed_install_reports_why_through_is_model_loading(rig):
    car, _, good, work = rig
    status, body = upload(car, "broken.tar.gz", tar_gz({"model_metadata.json": good["model_metadata.json"]}))
    assert status == 422
    loading = car.client().request("GET", "/api/isModelLoading").body
    assert loading["isModelLoading"] == "error" and loading["model"] == "broken"
    assert loading["reason"] == body["reason"]


def test_racer_bundle_installs_atomically_and_loads(rig):
    car, _, good, _ = rig
    client = car.client()
    status, body = upload(car, "curves.tar.gz", tar_gz(good))
    assert (status, body["model_folder_name"]) == (200, "curves"), body
    assert client.request("GET", "/api/isModelLoading").body["isModelLoading"] == "installed"
    listed = {m["model_folder_name"]: m for m in client.request("GET", "/api/models").body["models"]}
    assert listed["curves"]["model_name"] == "model" and not listed["curves"]["is_select_disabled"]
    assert (car.state.models / "curves" / "model.xml").read_bytes() == good["model.xml"]

    replaced = {**good, "model_metadata.json": json.dumps(
        {**json.loads(good["model_metadata.json"]), "version": "6"}).encode()}
    missing, done = [], threading.Event()

    def watch() -> None:  # the folder never disappears while it is replaced
        while not done.is_set():
            if not (car.state.models / "curves" / "model_metadata.json").is_file():
                missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert upload(car, "curves.tar.gz", tar_gz(replaced))[0] == 200
    finally:
        done.set()
        watcher.join()
    assert missing == []
    assert json.loads((car.state.models / "curves" / "model_metadata.json").read_text())["version"] == "6"
    assert sorted(p.name for p in car.state.models.iterdir()) == ["curves"]

    answer = client.request("PUT", "/api/models/curves/model")
    assert answer.status == 200, answer.body
    status = client.request("GET", "/api/status").body
    assert status["model"] == "curves" and status["loading"]["isModelLoading"] == "loaded"
    assert client.request("PUT", "/api/models/curves/other").status == 404
    assert client.request("PUT", "/api/models/nothing/model").status == 404


def test_aws_export_converts_in_the_background_with_progress(rig):
    car, _, _, _ = rig
    client = car.client()
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        watcher = car.client()
        while not done.is_set():
            loading = watcher.request("GET", "/api/isModelLoading").body
            if loading["isModelLoading"] == "loading":
                seen.append(loading["stage"])
            time.sleep(0.02)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        status, body = upload(car, PPO_TAR.name, PPO_TAR.read_bytes())
    finally:
        done.set()
        thread.join()
    assert status == 200, body
    assert {"converting", "compiling"} & set(seen), seen
    folder = body["model_folder_name"]
    assert folder == "deepracer_discrete_ppo"
    assert client.request("PUT", f"/api/models/{folder}/model").status == 200
    assert client.request("GET", "/api/status").body["model"] == folder
    assert any((car.state.cache / "ir").rglob("model.xml"))


def test_a_folder_tarred_on_a_mac_installs_without_its_appledouble_files(rig):
    car, _, _, _ = rig
    double = b"\0\5\026\7\0\2\0\0Mac OS X        "
    folder = tarfile.TarInfo("mymodel")
    folder.type = tarfile.DIRTYPE
    archive = tar_gz({"./._mymodel": double, "mymodel/._model.pb": double, "mymodel/model.pb": pb_bytes(),
                      "mymodel/._model_metadata.json": double, "mymodel/model_metadata.json": metadata_bytes()},
                     [folder])
    status, body = upload(car, "mymodel.tar.gz", archive)
    assert (status, body["model_folder_name"]) == (200, "mymodel"), body
    assert sorted(p.name for p in (car.state.models / "mymodel").iterdir()) == ["model.pb", "model_metadata.json"]


def test_delete_models_is_all_or_nothing(rig):
    car, _, _, _ = rig
    client = car.client()
    assert upload(car, SAC_TAR.name, SAC_TAR.read_bytes())[0] == 200
    answer = client.request("POST", "/api/deleteModels", {"filenames": ["deepracer_continuous_sac", "../state"]})
    assert answer.status == 400
    assert (car.state.models / "deepracer_continuous_sac").is_dir()
    assert client.request("POST", "/api/deleteModels", {"filenames": ["nope"]}).status == 404
    assert client.request("PUT", "/api/models/deepracer_continuous_sac/model").status == 200  # converts it
    converted = {p.name for p in (car.state.cache / "ir").glob("*/*")}
    answer = client.request("POST", "/api/deleteModels", {"filenames": ["deepracer_continuous_sac"]})
    assert answer.status == 409 and "driving" in answer.reason  # the loaded model stays
    assert client.request("PUT", "/api/models/driving/model").status == 200
    answer = client.request("POST", "/api/deleteModels", {"filenames": ["deepracer_continuous_sac"]})
    assert answer.status == 200 and answer.body["success"] is True
    assert not (car.state.models / "deepracer_continuous_sac").exists()
    left = {p.name for p in (car.state.cache / "ir").glob("*/*")}
    assert len(converted - left) == 1  # its converted IR went with it; the other models' stayed


def test_upload_requests_without_a_file_are_refused(rig):
    car, _, good, _ = rig
    assert upload(car, "x.tar.gz", tar_gz(good), field="other") == (400, {
        "success": False, "reason": "no field named file in the upload"})
    status, _, data = car.request("POST", "/api/uploadModels", b"{}", {
        "Content-Type": "application/json", "Authorization": f"Bearer {token(car)}"})
    assert status == 400 and "multipart" in json.loads(data)["reason"]
