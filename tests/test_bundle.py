"""Model bundles: the DeepRacer .pb fixtures, the IR cache, every refusal, save/pack round trips."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import car.policy.bundle
from car.policy.archive import ArchiveError, extract, scan
from car.policy.bundle import load_bundle, pack_bundle, save_bundle
from car.policy.bundle_layout import BundleError
from car.policy.inference import Policy
from car.policy.metadata import METADATA_FILE
from car.policy.preprocess import DEEPRACER_SPEC, PreprocessSpec
from car.policy.signature import Signature
from car.policy.warning import Caution
from model_factory import (
    CONTINUOUS,
    FRAMES_DIR,
    MODELS,
    PPO_TAR,
    SAC_TAR,
    expected_output,
    ir_files,
    metadata,
    metadata_bytes,
    onnx_model,
    ov_model,
    pb_bytes,
    write_tar,
)
from racer.model.describe import describe

PPO_INPUT = "main_level/agent/main/online/network_0/FRONT_FACING_CAMERA/FRONT_FACING_CAMERA"
SAC_INPUT = "main_level/agent/policy/online/network_0/FRONT_FACING_CAMERA/FRONT_FACING_CAMERA"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def ir_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("ov-*/*/model.xml"))


def test_discrete_ppo_pb_loads_with_deepracer_names(cache):
    with load_bundle(PPO_TAR, cache) as bundle:
        assert bundle.kind == "tensorflow"
        assert bundle.name == "deepracer_discrete_ppo"
        assert bundle.files.path.relative_to(bundle.root).as_posix() == "agent/model.pb"
        assert bundle.signature.input_name == PPO_INPUT
        assert bundle.signature.output_name == "main_level/agent/main/online/network_1/ppo_head_0/policy"
        assert bundle.signature.input_shape == (1, 120, 160, 1)
        assert bundle.signature.output_size == 5
        assert bundle.spec == dataclasses.replace(DEEPRACER_SPEC, input_name=PPO_INPUT)
        assert bundle.metadata.training_algorithm == "clipped_ppo"
        assert bundle.stats is None and bundle.unrunnable is None


def _fields(bundle) -> dict:
    return {f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle)}


def test_a_loaded_bundle_is_resolved_at_load_and_never_changes(cache):
    with load_bundle(PPO_TAR, cache) as bundle:
        loaded = _fields(bundle)
        assert bundle.spec.input_name == PPO_INPUT and bundle.model_file == ir_entries(cache)[0]
        Policy(bundle, cache / "compiled").infer(np.zeros((1, 120, 160, 1), dtype=np.float32))
        shutil.rmtree(cache)  # the IR cache cleared under a loaded bundle: read_model converts again
        assert [tuple(o.shape) for o in bundle.read_model().outputs] == [(1, 5)] and len(ir_entries(cache)) == 1
        assert _fields(bundle) == loaded
        with pytest.raises(dataclasses.FrozenInstanceError):
            bundle.spec = DEEPRACER_SPEC
        area = bundle.with_preprocess("area")
        assert (area.spec.interpolation, area.spec.input_name, area.signature) == ("area", PPO_INPUT, bundle.signature)
        assert _fields(bundle) == loaded


def test_an_unvalidated_bundle_leaves_openvino_out_and_cannot_run(cache):
    with load_bundle(PPO_TAR, cache, validate=False) as bundle:
        assert bundle.spec == DEEPRACER_SPEC
        assert (bundle.model_file, bundle.signature, bundle.precision) == (None, None, None)
        with pytest.raises(BundleError, match="^deepracer_discrete_ppo was loaded without validation; load it again"):
            bundle.read_model()
    assert not cache.exists()


def test_continuous_sac_pb_loads_with_deepracer_names(cache):
    with load_bundle(SAC_TAR, cache) as bundle:
        assert (bundle.kind, bundle.signature.input_name) == ("tensorflow", SAC_INPUT)
        assert bundle.signature.output_name == "main_level/agent/policy/online/network_0/sac_policy_head_0/policy"
        assert bundle.signature.output_size == 2
        model = bundle.read_model()
        assert [tuple(o.shape) for o in model.outputs] == [(1, 2)]


def test_unpacked_directory_loads_like_the_archive(tmp_path, cache):
    with tarfile.open(SAC_TAR) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    with load_bundle(tmp_path / "unpacked", cache) as bundle:
        assert (bundle.kind, bundle.signature.output_size, bundle.name) == ("tensorflow", 2, "unpacked")


def test_archive_with_one_top_folder_loads(tmp_path, cache):
    path = write_tar(tmp_path / "wrapped.tar.gz",
                     {"mymodel/model.pb": pb_bytes(), "mymodel/model_metadata.json": metadata_bytes()})
    with load_bundle(path, cache) as bundle:
        assert bundle.signature.output_size == 5


def test_archive_is_unpacked_privately_and_removed_on_close(cache):
    bundle = load_bundle(PPO_TAR, cache)
    root = bundle.root
    assert (root / "agent" / "model.pb").read_bytes() == pb_bytes()
    assert root.stat().st_mode & 0o777 == 0o700
    bundle.close()
    assert not root.exists()


def test_second_load_uses_the_cached_ir(cache, monkeypatch):
    conversions = []
    real = car.policy.bundle.convert_frozen_graph
    monkeypatch.setattr(car.policy.bundle, "convert_frozen_graph", lambda *a: conversions.append(a) or real(*a))
    load_bundle(PPO_TAR, cache).close()
    [xml] = ir_entries(cache)
    stamp = xml.stat().st_mtime_ns
    load_bundle(PPO_TAR, cache).close()
    assert len(conversions) == 1
    assert ir_entries(cache) == [xml] and xml.stat().st_mtime_ns == stamp
    load_bundle(PPO_TAR, cache.with_name("other")).close()
    assert len(conversions) == 2


def test_cache_is_keyed_by_pb_content(cache):
    load_bundle(PPO_TAR, cache).close()
    load_bundle(SAC_TAR, cache).close()
    digests = {p.parent.name.split("-")[0] for p in ir_entries(cache)}
    assert digests == {hashlib.sha256(pb_bytes(t)).hexdigest() for t in (PPO_TAR, SAC_TAR)}


def test_cache_dir_comes_from_env_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RACER_CACHE_DIR", str(tmp_path / "env-cache"))
    load_bundle(SAC_TAR).close()
    assert len(ir_entries(tmp_path / "env-cache")) == 1


def test_fixture_inputs_are_the_grey_frames():
    expected = np.load(MODELS / "tf_expected.npz")
    frames = ("sim-image-3-00000.png", "sim-image-3-00350.png", "sim-image-3-00916.png")
    for stored, name in zip(expected["inputs"], frames, strict=True):
        grey = cv2.cvtColor(cv2.imread(str(FRAMES_DIR / name)), cv2.COLOR_BGR2GRAY)
        assert stored.shape == (1, 120, 160, 1)
        assert np.abs(stored[0, :, :, 0].astype(int) - grey.astype(int)).max() <= 1


def _ir_tar(tmp_path: Path, model, meta: dict | bytes | None = None, extra: dict[str, bytes] | None = None) -> Path:
    files = ir_files(model, tmp_path / "ir")
    files[METADATA_FILE] = meta if isinstance(meta, bytes) else metadata_bytes(meta)
    return write_tar(tmp_path / "bundle.tar.gz", {**files, **(extra or {})})


def _meta(**changes) -> dict:
    return {**metadata(), **changes}


BAD_METADATA = [
    ("unknown sensor", _meta(sensor=["SONAR"]), "unknown sensor 'SONAR'"),
    ("empty action space", _meta(action_space=[]), "action_space must be a non-empty list"),
    ("low >= high", {**metadata(CONTINUOUS), "action_space": {"speed": {"low": 2, "high": 1},
                                                              "steering_angle": {"low": -30, "high": 30}}},
     "low 2.0 must be below high 1.0"),
]


@pytest.mark.parametrize("meta, reason", [case[1:] for case in BAD_METADATA], ids=[c[0] for c in BAD_METADATA])
def test_bad_metadata_is_refused(tmp_path, cache, meta, reason):
    with pytest.raises(BundleError) as err:
        load_bundle(_ir_tar(tmp_path, ov_model(), meta), cache)
    assert str(err.value).startswith("model_metadata.json: ") and reason in str(err.value)


def test_nan_speed_is_refused(tmp_path, cache):
    text = json.dumps(metadata()).replace('"speed": 0.6', '"speed": NaN', 1).encode()
    assert b"NaN" in text
    with pytest.raises(BundleError, match=r"action_space\[0\]\.speed must be finite"):
        load_bundle(_ir_tar(tmp_path, ov_model(), text), cache)


def test_missing_metadata(tmp_path, cache):
    path = write_tar(tmp_path / "m.tar.gz", {"model.pb": pb_bytes()})
    with pytest.raises(BundleError, match="^missing model_metadata.json$"):
        load_bundle(path, cache)


def test_input_shape_mismatch(tmp_path, cache):
    with pytest.raises(BundleError, match="^model input 1x3x64x64 does not match the preprocessing 1x120x160x1$"):
        load_bundle(_ir_tar(tmp_path, ov_model(shape=(1, 3, 64, 64))), cache)


def test_output_size_mismatch_discrete(tmp_path, cache):
    with pytest.raises(BundleError, match="^model gives 7 outputs but model_metadata.json needs 5 discrete actions$"):
        load_bundle(_ir_tar(tmp_path, ov_model(outputs=7)), cache)


def test_output_size_mismatch_continuous(tmp_path, cache):
    with pytest.raises(BundleError, match="gives 5 outputs .* needs 2 .steering, speed."):
        load_bundle(_ir_tar(tmp_path, ov_model(), metadata(CONTINUOUS)), cache)


def test_pb_metadata_mismatch_is_an_output_size_error(tmp_path, cache):
    path = write_tar(tmp_path / "p.tar.gz",
                     {"model.pb": pb_bytes(PPO_TAR), "model_metadata.json": metadata_bytes(metadata(CONTINUOUS))})
    with pytest.raises(BundleError, match="gives 5 outputs"):
        load_bundle(path, cache)


def test_truncated_archive(tmp_path, cache):
    data = PPO_TAR.read_bytes()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="^archive is truncated$"):
        load_bundle(path, cache)


def test_not_an_archive(tmp_path, cache):
    path = tmp_path / "model.tar.gz"
    path.write_text("just some text\n")
    with pytest.raises(BundleError, match=r"^not a \.tar\.gz archive"):
        load_bundle(path, cache)


def test_gzip_without_tar(tmp_path, cache):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(gzip.compress(b"not a tar" * 100))
    with pytest.raises(BundleError, match="no tar inside"):
        load_bundle(path, cache)


def test_missing_path(tmp_path, cache):
    with pytest.raises(BundleError, match="no such file or directory"):
        load_bundle(tmp_path / "nope.tar.gz", cache)


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


UNSAFE = [
    ("path traversal", {"../evil.json": b"{}"}, [], "points outside the archive"),
    ("nested traversal", {"agent/../../evil.json": b"{}"}, [], "points outside the archive"),
    ("absolute path", {"/tmp/evil.json": b"{}"}, [], "has an absolute path"),
    ("symlink", {}, [_special("model.pb", tarfile.SYMTYPE, "/etc/passwd")], "is a symbolic link"),
    ("hard link", {}, [_special("model.pb", tarfile.LNKTYPE, "model_metadata.json")], "is a hard link"),
    ("device", {}, [_special("dev", tarfile.CHRTYPE)], "is a device"),
    ("fifo", {}, [_special("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    ("duplicate", {"model.pb": b"x", "./model.pb": b"y"}, [], "holds 'model.pb' twice"),
]


@pytest.mark.parametrize("files, special, reason", [c[1:] for c in UNSAFE], ids=[c[0] for c in UNSAFE])
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, cache, files, special, reason):
    path = write_tar(tmp_path / "evil.tar.gz", {"model_metadata.json": metadata_bytes(), **files}, special)
    with pytest.raises(BundleError) as err:
        load_bundle(path, cache)
    assert reason in str(err.value) and "\n" not in str(err.value)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError):
        extract(path, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.json").exists()


def test_member_count_and_size_limits(tmp_path):
    path = write_tar(tmp_path / "many.tar.gz", {f"f{i}": b"x" * 60 for i in range(3)})
    assert [m.name for m in scan(path)] == ["f0", "f1", "f2"]
    with pytest.raises(ArchiveError, match="more than 2 members"):
        scan(path, max_members=2)
    with pytest.raises(ArchiveError, match="more than 100 bytes"):
        scan(path, max_bytes=100)


def test_gzip_bomb_in_a_header_is_refused_before_it_is_read(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("a" * 5_000_000))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(ArchiveError, match="^archive has a 5000001-byte long-name or pax header; the limit is 8192$"):
        scan(bomb, max_members=1, max_bytes=100_000)


def test_two_pb_files(tmp_path, cache):
    path = write_tar(tmp_path / "two.tar.gz", {"model_1.pb": pb_bytes(), "model_2.pb": pb_bytes(),
                                               "model_metadata.json": metadata_bytes()})
    with pytest.raises(BundleError,
                       match=r"^2 model files \(model_1.pb, model_2.pb\); keep one, or name the one to run model.pb$"):
        load_bundle(path, cache)


def test_model_pb_is_preferred_over_checkpoint_pbs(tmp_path, cache):
    path = write_tar(tmp_path / "ckpt.tar.gz", {"model_3.pb": b"stale", "model.pb": pb_bytes(),
                                                "model_metadata.json": metadata_bytes()})
    with load_bundle(path, cache) as bundle:
        assert bundle.files.path.name == "model.pb" and bundle.signature.output_size == 5


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


APPLE_DOUBLE = b"\0\5\026\7\0\2\0\0Mac OS X        "
# (archive files, directory members) as Finder, macOS tar, zip tools and Windows Explorer leave them.
LITTER = [
    ("macos tar of a folder", {"./._mymodel": APPLE_DOUBLE, "mymodel/._model.pb": APPLE_DOUBLE,
                               "mymodel/._model_metadata.json": APPLE_DOUBLE}, ["mymodel/"]),
    ("appledouble at the root", {"._model.xml": APPLE_DOUBLE, "._model_metadata.json": APPLE_DOUBLE}, []),
    ("__MACOSX beside the folder", {"__MACOSX/mymodel/._model.pb": APPLE_DOUBLE, "__MACOSX/._mymodel": APPLE_DOUBLE},
     ["__MACOSX/", "__MACOSX/mymodel/", "mymodel/"]),
    (".DS_Store at every depth",
     {".DS_Store": b"Bud1", "mymodel/.DS_Store": b"Bud1", "mymodel/agent/.DS_Store": b"Bud1"},
     ["mymodel/", "mymodel/agent/"]),
    ("windows explorer and wsl", {"Thumbs.db": b"\xd0\xcf", "mymodel/desktop.ini": b"[.ShellClassInfo]",
                                  "mymodel/model.pb:Zone.Identifier": b"[ZoneTransfer]\r\nZoneId=3"}, ["mymodel/"]),
]


def test_metadata_without_sensor_finds_the_front_camera_input(tmp_path, cache):
    meta = {k: v for k, v in metadata().items() if k != "sensor"}
    path = write_tar(tmp_path / "old.tar.gz", {"model.pb": pb_bytes(), "model_metadata.json": metadata_bytes(meta)})
    with load_bundle(path, cache) as bundle:
        assert bundle.metadata.sensors == ("OBSERVATION",)
        assert (bundle.signature.input_name, bundle.signature.output_size) == (PPO_INPUT, 5)


@pytest.mark.parametrize("litter, dirs", [c[1:] for c in LITTER], ids=[c[0] for c in LITTER])
def test_operating_system_litter_is_ignored_at_any_depth(tmp_path, cache, litter, dirs):
    top = "mymodel/" if dirs else ""
    files = {**litter, f"{top}model.pb": pb_bytes(), f"{top}model_metadata.json": metadata_bytes()}
    path = write_tar(tmp_path / "mac.tar.gz", files, [_dir(d) for d in dirs])
    with load_bundle(path, cache) as bundle:
        assert (bundle.kind, bundle.files.path.name, bundle.signature.output_size) == ("tensorflow", "model.pb", 5)
    assert {m.name for m in scan(path)} == {d.rstrip("/") for d in dirs if "MACOSX" not in d} | {
        f"{top}model.pb", f"{top}model_metadata.json"}
    dest = tmp_path / "dest"
    dest.mkdir()
    extract(path, dest)
    written = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert written == {f"{top}model.pb", f"{top}model_metadata.json"}


def test_litter_in_an_unpacked_folder_is_ignored(tmp_path, cache):
    folder = tmp_path / "unpacked"
    (folder / "__MACOSX").mkdir(parents=True)
    (folder / "mymodel").mkdir()
    (folder / "._mymodel").write_bytes(APPLE_DOUBLE)
    (folder / ".DS_Store").write_bytes(b"Bud1")
    (folder / "mymodel" / "model.pb").write_bytes(pb_bytes())
    (folder / "mymodel" / "model_metadata.json").write_bytes(metadata_bytes())
    with load_bundle(folder, cache) as bundle:
        assert bundle.root == folder / "mymodel" and bundle.signature.output_size == 5


def test_an_archive_of_litter_alone_has_no_model(tmp_path, cache):
    path = write_tar(tmp_path / "mac.tar.gz", {"._model.pb": APPLE_DOUBLE, "__MACOSX/model_metadata.json": b"{}"})
    assert scan(path) == []
    with pytest.raises(BundleError, match="^no model file"):
        load_bundle(path, cache)


def _converted_ir(tmp_path: Path, archive: Path, cache: Path) -> dict[str, bytes]:
    with load_bundle(archive, cache) as bundle:
        return ir_files(bundle.read_model(), tmp_path / f"ir-{archive.stem}")


def test_pb_with_its_own_converted_ir_uses_that_ir(tmp_path, cache):
    ir = _converted_ir(tmp_path, PPO_TAR, cache / "first")
    path = write_tar(tmp_path / "drem.tar.gz", {"model.pb": pb_bytes(), **ir, "model_metadata.json": metadata_bytes()})
    with load_bundle(path, cache) as bundle:
        assert bundle.kind == "tensorflow" and bundle.signature.output_size == 5
        assert describe(bundle)["shipped_ir"] == {"file": "model.xml", "used": True, "reason": None}
    assert ir_entries(cache) == []


STALE_IR = [
    ("another model's ir", lambda tmp, cache: _converted_ir(tmp, SAC_TAR, cache),
     "model.xml is not recorded as converted from this model.pb"),
    ("ir without source record", lambda tmp, cache: ir_files(ov_model(), tmp / "plain"),
     "model.xml is not recorded as converted from this model.pb"),
    ("ir that does not load", lambda tmp, cache: {"model.xml": b"<net", "model.bin": b""}, "cannot read model.xml: "),
    ("ir without weights", lambda tmp, cache: {"model.xml": ir_files(ov_model(), tmp / "w")["model.xml"]},
     "cannot read model.xml: "),
]


@pytest.mark.parametrize("make_ir, reason", [c[1:] for c in STALE_IR], ids=[c[0] for c in STALE_IR])
def test_pb_with_a_stale_or_broken_ir_converts_the_pb(tmp_path, cache, make_ir, reason):
    ir = make_ir(tmp_path, cache / "other")
    path = write_tar(tmp_path / "car.tar.gz", {"model.pb": pb_bytes(), **ir, "model_metadata.json": metadata_bytes()})
    expected = np.load(MODELS / "tf_expected.npz")
    with load_bundle(path, cache) as bundle:
        shipped = describe(bundle)["shipped_ir"]
        assert (shipped["file"], shipped["used"]) == ("model.xml", False)
        assert shipped["reason"].startswith(reason) and "\n" not in shipped["reason"]
        policy = Policy(bundle, tmp_path / "compiled")
        got = np.stack([policy.infer(x.astype(np.float32)) for x in expected["inputs"]])
    np.testing.assert_allclose(got, expected["discrete_ppo"], atol=1e-5)
    assert len(ir_entries(cache)) == 1


def test_pb_beside_onnx_is_two_models(tmp_path, cache):
    onnx = onnx_model(tmp_path / "model.onnx").read_bytes()
    path = write_tar(tmp_path / "two.tar.gz", {"model.pb": pb_bytes(), "model.onnx": onnx,
                                               "model_metadata.json": metadata_bytes()})
    with pytest.raises(BundleError, match=r"^2 model files \(model.pb, model.onnx\); a bundle holds one model$"):
        load_bundle(path, cache)


ROS_PACKAGE_XML = b'<?xml version="1.0"?>\n<package format="3"><name>x</name></package>'


@pytest.mark.parametrize("other", [{"README": b"hi"}, {"package.xml": ROS_PACKAGE_XML}],
                         ids=["a readme", "a ROS package.xml, which is no OpenVINO IR"])
def test_no_model(tmp_path, cache, other):
    path = write_tar(tmp_path / "none.tar.gz", {"model_metadata.json": metadata_bytes(), **other})
    with pytest.raises(BundleError, match=r"^no model file \(model.pb, model.xml \+ model.bin, or model.onnx\)$"):
        load_bundle(path, cache)


def test_ir_without_weights(tmp_path, cache):
    files = ir_files(ov_model(), tmp_path / "ir")
    path = write_tar(tmp_path / "x.tar.gz", {"model.xml": files["model.xml"], "model_metadata.json": metadata_bytes()})
    with pytest.raises(BundleError, match="^model.xml has no model.bin beside it$"):
        load_bundle(path, cache)


def test_garbage_pb(tmp_path, cache):
    path = write_tar(tmp_path / "g.tar.gz", {"model.pb": b"\x00garbage" * 10, "model_metadata.json": metadata_bytes()})
    with pytest.raises(BundleError) as err:
        load_bundle(path, cache)
    assert "\n" not in str(err.value) and "model.pb" in str(err.value)


@pytest.mark.parametrize("racer, reason", [
    ({"format": "other", "version": 1}, "format must be 'racer-bundle'"),
    ({"format": "racer-bundle", "version": 3, "preprocess": {}}, "version 3 is newer than this racer reads (2)"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {"width": 160, "bogus": 1}}, "unknown key(s) bogus"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "stats": [1]}, "stats must be an object"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": [0.25, 0.8]},
     "caution must be an object with warning and speed_scale"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": 0.25}},
     "caution must be an object with warning and speed_scale"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {},
      "caution": {"warning": 0.25, "speed_scale": 0.8, "when": "always"}},
     "caution must be an object with warning and speed_scale"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": "0.25", "speed_scale": 0.8}},
     "caution warning must be a finite number, got '0.25'"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": 0.25, "speed_scale": True}},
     "caution speed_scale must be a finite number, got True"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": -1, "speed_scale": 0.8}},
     "caution warning must be above 0, got -1.0"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": 10**400, "speed_scale": 0.8}},
     "caution warning must be a finite number, got an integer of 401 digits"),
    # a scale above 1 would make the car faster than its policy asks where it doubts most
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": 0.25, "speed_scale": 1.5}},
     "caution speed_scale must be in (0, 1], got 1.5"),
    ({"format": "racer-bundle", "version": 1, "preprocess": {}, "caution": {"warning": 0.25, "speed_scale": 0}},
     "caution speed_scale must be in (0, 1], got 0.0"),
])
def test_bad_racer_json(tmp_path, cache, racer, reason):
    path = _ir_tar(tmp_path, ov_model(), extra={"racer.json": json.dumps(racer).encode()})
    with pytest.raises(BundleError) as err:
        load_bundle(path, cache)
    assert str(err.value).startswith("racer.json: ") and reason in str(err.value)


@pytest.mark.parametrize("name, text, reason", [
    ("racer.json", b'{"format": "racer-bundle", "version": 1, "x": ' + b"9" * 5000 + b"}",
     "racer.json cannot be read: a number in it has too many digits"),
    ("racer.json", b"[" * 100000 + b"]" * 100000, "racer.json cannot be read: it nests too deeply"),
    ("model_metadata.json", b'{"version": ' + b"9" * 5000 + b"}",
     "model_metadata.json cannot be read: a number in it has too many digits"),
    ("model_metadata.json", b"[" * 100000 + b"]" * 100000, "model_metadata.json cannot be read: it nests too deeply"),
])
def test_json_past_the_readers_limits_is_refused_by_name(tmp_path, cache, name, text, reason):
    path = _ir_tar(tmp_path, ov_model(), extra={name: text}) if name == "racer.json" else \
        _ir_tar(tmp_path, ov_model(), meta=text)
    with pytest.raises(BundleError) as err:
        load_bundle(path, cache)
    assert str(err.value) == reason


@pytest.mark.parametrize("sensors, reason", [
    (["FRONT_FACING_CAMERA", "LIDAR"], "model needs LIDAR; this car has one front camera"),
    (["STEREO_CAMERAS", "LIDAR"], "model needs STEREO_CAMERAS and LIDAR; this car has one front camera"),
    (["STEREO_CAMERAS"], "model needs STEREO_CAMERAS; this car has one front camera"),
])
def test_sensor_the_car_lacks_loads_but_is_unrunnable(tmp_path, cache, sensors, reason):
    path = write_tar(tmp_path / "l.tar.gz",
                     {"model.pb": pb_bytes(), "model_metadata.json": metadata_bytes(_meta(sensor=sensors))})
    with load_bundle(path, cache) as bundle:
        assert bundle.unrunnable == reason
        assert describe(bundle)["runnable"] is False
        with pytest.raises(BundleError, match=reason):
            bundle.read_model()
    assert ir_entries(cache) == []


def test_save_and_load_ir_round_trip(tmp_path, cache):
    spec = PreprocessSpec(width=64, height=48, crop_top=8, layout="NCHW", scale=1 / 255)
    stats = {"mean": np.float32(0.5), "hist": np.arange(4)}
    saved = save_bundle(tmp_path / "b", ov_model(shape=spec.input_shape(), outputs=2, softmax=False),
                        metadata(CONTINUOUS), spec, stats=stats, info={"steps": 10}, cache_dir=cache)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.bin", "model.xml", "model_metadata.json",
                                                                  "racer.json"]
    racer = json.loads((tmp_path / "b" / "racer.json").read_text())
    assert racer == {"format": "racer-bundle", "version": 1, "preprocess": spec.to_json(),
                     "stats": {"mean": 0.5, "hist": [0, 1, 2, 3]}, "model": {"steps": 10}}
    with load_bundle(tmp_path / "b", cache) as bundle:
        assert (bundle.kind, bundle.spec) == ("openvino", spec)
        assert (bundle.signature.input_shape, bundle.signature.output_size) == ((1, 1, 40, 64), 2)
        assert bundle.stats == {"mean": 0.5, "hist": [0, 1, 2, 3]} and bundle.info == {"steps": 10}
        assert bundle.metadata.training_algorithm == "sac"
        assert bundle.caution is None  # racer.json above has no caution key
    saved.close()


def test_a_bundle_carries_its_caution_to_the_policy(tmp_path, cache):
    spec = PreprocessSpec(width=64, height=48, scale=1 / 255)
    saved = save_bundle(tmp_path / "b", ov_model(shape=spec.input_shape(), outputs=2, softmax=False),
                        metadata(CONTINUOUS), spec, cache_dir=cache, caution=Caution(0.25, 0.8))
    saved.close()
    racer = json.loads((tmp_path / "b" / "racer.json").read_text())
    # version 2, so a car too old to apply the caution refuses the bundle rather than drive it at full speed
    assert (racer["version"], racer["caution"]) == (2, {"warning": 0.25, "speed_scale": 0.8})
    with load_bundle(tmp_path / "b", cache) as bundle:
        assert bundle.caution == Caution(0.25, 0.8)
        assert Policy(bundle, cache).model().caution == Caution(0.25, 0.8)


def test_save_onnx_keeps_onnx_beside_ir(tmp_path, cache):
    onnx = onnx_model(tmp_path / "policy.onnx")
    with save_bundle(tmp_path / "b", onnx, metadata(), DEEPRACER_SPEC, cache_dir=cache) as bundle:
        assert bundle.kind == "openvino"
        assert bundle.files.onnx.name == "model.onnx"
        assert (tmp_path / "b" / "model.onnx").read_bytes() == onnx.read_bytes()
        assert describe(bundle)["onnx_file"] == "model.onnx"


def test_onnx_only_bundle_loads(tmp_path, cache):
    path = write_tar(tmp_path / "o.tar.gz", {"model.onnx": onnx_model(tmp_path / "m.onnx").read_bytes(),
                                             "model_metadata.json": metadata_bytes()})
    with load_bundle(path, cache) as bundle:
        assert bundle.kind == "onnx"
        assert bundle.signature == Signature("image", (1, 120, 160, 1), "policy", 5)


def test_save_refuses_a_model_that_does_not_fit_and_leaves_nothing(tmp_path, cache):
    with pytest.raises(BundleError, match="gives 3 outputs"):
        save_bundle(tmp_path / "b", ov_model(outputs=3), metadata(), DEEPRACER_SPEC, cache_dir=cache)
    assert not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep").write_text("x")
    with pytest.raises(BundleError, match="not an empty directory"):
        save_bundle(tmp_path / "c", ov_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache)
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep"]


def test_save_refuses_bad_metadata_before_writing(tmp_path, cache):
    with pytest.raises(BundleError, match="unknown sensor"):
        save_bundle(tmp_path / "b", ov_model(), _meta(sensor=["SONAR"]), DEEPRACER_SPEC, cache_dir=cache)
    assert not (tmp_path / "b").exists()


def test_pack_is_reproducible_and_loads(tmp_path, cache):
    save_bundle(tmp_path / "b", ov_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache).close()
    first = pack_bundle(tmp_path / "b", tmp_path / "one.tar.gz").read_bytes()
    second = pack_bundle(tmp_path / "b", tmp_path / "two.tar.gz").read_bytes()
    assert first == second
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        assert tar.getnames() == ["model.bin", "model.xml", "model_metadata.json", "racer.json"]
    with load_bundle(tmp_path / "one.tar.gz", cache) as bundle:
        x = np.full(bundle.signature.input_shape, 100.0, dtype=np.float32)
        np.testing.assert_allclose(Policy(bundle, cache / "c").infer(x), expected_output(x, 5), atol=1e-6)
