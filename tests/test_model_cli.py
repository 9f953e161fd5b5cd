"""`racer model inspect|check|convert` as a user runs them: a subprocess, JSON on stdout, exit codes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from car.config import DEFAULT_MODEL
from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from car.policy.warning import Caution
from model_factory import FRAMES_DIR, MODELS, PPO_TAR, SAC_TAR, metadata_bytes, pb_bytes, write_tar

FRAMES = ("sim-image-3-00000.png", "sim-image-3-00350.png", "sim-image-3-00916.png")


@pytest.fixture
def racer(tmp_path):
    env = {**os.environ, "RACER_CACHE_DIR": str(tmp_path / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "racer.cli", "model", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    return run


def test_check_json_accepts_the_deepracer_pb(racer):
    done = racer("check", str(PPO_TAR), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["kind"] == "tensorflow"
    assert result["input"]["shape"] == [1, 120, 160, 1]
    assert result["output"] == {"name": "main_level/agent/main/online/network_1/ppo_head_0/policy", "size": 5}


def test_inspect_json_describes_the_sac_model(racer):
    done = racer("inspect", str(SAC_TAR), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["name"], result["kind"], result["model_file"], result["runnable"]) == (
        "deepracer_continuous_sac", "tensorflow", "model.pb", True)
    assert result["metadata"]["training_algorithm"] == "sac"
    assert result["metadata"]["action_space"] == {"steering_angle": {"low": -30.0, "high": 30.0},
                                                  "speed": {"low": 1.0, "high": 2.0}}
    assert result["preprocess"]["input_name"].endswith("FRONT_FACING_CAMERA/FRONT_FACING_CAMERA")


def test_inspect_lines_the_actions_up_under_their_headings(racer):
    done = racer("inspect", str(PPO_TAR))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    start = lines.index("  output    steering      speed")
    header, rows = lines[start], lines[start + 1:start + 6]
    assert [row.split()[0] for row in rows] == ["0", "1", "2", "3", "4"]
    for row in rows:  # each column ends where its heading does
        assert len(row) == len(header)
        assert row.index(" deg") + len(" deg") == header.index("steering") + len("steering")
    assert rows[2] == "       2    +0.0 deg   0.60 m/s" and rows[0] == "       0   -30.0 deg   0.60 m/s"


CAUTION_LINE = "  caution: 0.8 of the policy's speed while the car's warning is above 0.25"


def test_inspect_says_how_racer_exported_the_bundled_model_and_nothing_of_an_aws_one(racer):
    done = racer("inspect", str(DEFAULT_MODEL))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-3:] == [
        "  exported by racer from dagger, an ensemble of 3 (seeds 0, 1, 2); a perception monitor; steering scale 1.5",
        CAUTION_LINE,
        "  trained on reinvent_base, Spain_track, Tokyo_Training_track (not among racer eval's default tracks)"]
    aws = racer("inspect", str(PPO_TAR))
    assert aws.returncode == 0 and "exported by racer" not in aws.stderr and "trained on" not in aws.stderr
    assert "caution" not in aws.stderr


def test_inspect_names_only_the_training_tracks_a_hand_edited_racer_json_gives_as_names(racer, tmp_path):
    edit = {"config": {"tracks": [1, "Spain_track", "", "a\nb", None, ["x"], "my_track.npy"]}}
    done = racer("inspect", edited_default_model(tmp_path, edit))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == ("  trained on Spain_track, my_track.npy "
                                            "(not among racer eval's default tracks)")


def edited_default_model(tmp_path, edit: dict) -> str:
    """A copy of the bundled model whose racer.json model info has `edit` applied, as a user might by hand."""
    bundle = tmp_path / "edited"
    shutil.copytree(DEFAULT_MODEL, bundle)
    doc = json.loads((bundle / "racer.json").read_text())
    doc["model"].update(edit)
    (bundle / "racer.json").write_text(json.dumps(doc))
    return str(bundle)


@pytest.mark.parametrize("edit, line", [
    ({"steering_scale": "1.5", "seeds": 3}, "  exported by racer from dagger; a perception monitor"),
    ({"steering_scale": None, "seeds": []}, "  exported by racer from dagger; a perception monitor"),
    ({"steering_scale": True, "seeds": [0, 1], "monitor": None},
     "  exported by racer from dagger, an ensemble of 2 (seeds 0, 1)"),
])
def test_inspect_leaves_out_what_a_hand_edited_racer_json_gives_in_another_type(racer, tmp_path, edit, line):
    done = racer("inspect", edited_default_model(tmp_path, {**edit, "config": {"tracks": "reinvent_base"}}))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-2:] == [line, CAUTION_LINE]  # the caution is racer.json's own key


def test_inspect_says_nothing_of_the_export_when_the_trainer_is_not_named(racer, tmp_path):
    done = racer("inspect", edited_default_model(tmp_path, {"trainer": None}))
    assert done.returncode == 0 and "exported by racer" not in done.stderr


def test_check_refuses_a_lidar_model_with_the_reason(racer, tmp_path):
    meta = json.loads(metadata_bytes())
    meta["sensor"] = ["FRONT_FACING_CAMERA", "LIDAR"]
    path = write_tar(tmp_path / "lidar.tar.gz",
                     {"model.pb": pb_bytes(), "model_metadata.json": json.dumps(meta).encode()})
    done = racer("check", str(path), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"ok": False, "reason": "model needs LIDAR; this car has one front camera"}
    inspected = racer("inspect", str(path), "--json")
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["runnable"] is False


def test_check_human_form_puts_the_reason_on_stderr(racer, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(PPO_TAR.read_bytes()[:5000])
    done = racer("check", str(cut))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "racer model check: archive is truncated\n"


def test_convert_pb_to_ir_tar_gz_keeps_tensorflows_numbers(racer, tmp_path):
    out = tmp_path / "converted.tar.gz"
    done = racer("convert", str(PPO_TAR), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["out"] == str(out)
    assert result["files"] == ["model.bin", "model.xml", "model_metadata.json", "racer.json"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file the user makes, not 0600
    expected = np.load(MODELS / "tf_expected.npz")
    with load_bundle(out, tmp_path / "cache") as bundle:
        assert bundle.kind == "openvino" and bundle.info["converted_from"] == "deepracer_discrete_ppo"
        assert bundle.metadata.raw == json.loads(metadata_bytes())
        policy = Policy(bundle, tmp_path / "compiled")
        got = np.stack([policy.infer(x.astype(np.float32)) for x in expected["inputs"]])
    assert np.abs(got - expected["discrete_ppo"]).max() < 1e-4


def test_convert_keeps_the_bundled_models_caution_or_sets_another(racer, tmp_path):
    for name, flags in (("kept", ()), ("none", ("--caution", "none")), ("other", ("--caution", "0.3,0.9"))):
        done = racer("convert", str(DEFAULT_MODEL), "--out", str(tmp_path / name), *flags)
        assert done.returncode == 0, done.stderr
    with load_bundle(DEFAULT_MODEL, tmp_path / "cache") as shipped:
        assert shipped.caution == Caution(0.25, 0.8)
    cautions = {}
    for name in ("kept", "none", "other"):
        with load_bundle(tmp_path / name, tmp_path / "cache") as bundle:
            cautions[name] = bundle.caution
    assert cautions == {"kept": Caution(0.25, 0.8), "none": None, "other": Caution(0.3, 0.9)}
    assert json.loads((tmp_path / "none" / "racer.json").read_text())["version"] == 1  # any racer reads it


def test_convert_refuses_a_caution_for_a_model_with_no_warning_or_a_bad_one(racer, tmp_path):
    done = racer("convert", str(PPO_TAR), "--out", str(tmp_path / "aws"), "--caution", "0.25,0.8")
    assert done.returncode == 1 and "this model has no monitor" in done.stderr
    done = racer("convert", str(DEFAULT_MODEL), "--out", str(tmp_path / "bad"), "--caution", "0.25,2")
    assert done.returncode == 2 and "caution speed_scale must be in (0, 1], got 2.0" in done.stderr
    assert not (tmp_path / "aws").exists() and not (tmp_path / "bad").exists()


def test_convert_to_a_non_empty_directory_fails_cleanly(racer, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    done = racer("convert", str(SAC_TAR), "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"ok": False,
                                       "reason": f"{tmp_path / 'out'} exists and is not an empty directory"}


@pytest.mark.parametrize("pb", [bytes(range(256)) * 8, b'node { name: "x" '], ids=["binary garbage", "broken text"])
def test_a_bad_pb_gives_one_line_and_no_native_log(racer, tmp_path, pb):
    path = write_tar(tmp_path / "bad.tar.gz", {"model.pb": pb, "model_metadata.json": metadata_bytes()})
    done = racer("check", str(path), "--json")
    assert (done.returncode, done.stderr) == (1, "")
    assert json.loads(done.stdout)["reason"].startswith("model.pb is not a TensorFlow frozen graph: ")
    human = racer("check", str(path))
    assert human.returncode == 1 and human.stdout == ""
    assert human.stderr.startswith("racer model check: model.pb is not a TensorFlow frozen graph")
    assert human.stderr.count("\n") == 1


def test_mac_archive_of_a_folder_checks_ok(racer, tmp_path):
    double = b"\0\5\026\7\0\2\0\0Mac OS X        "
    path = write_tar(tmp_path / "mymodel.tar.gz", {
        "./._mymodel": double, "mymodel/._model.pb": double, "mymodel/model.pb": pb_bytes(),
        "mymodel/._model_metadata.json": double, "mymodel/model_metadata.json": metadata_bytes()})
    done = racer("check", str(path), "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["output"]["size"] == 5


def test_predict_json_on_the_fixture_frames(racer):
    expected = np.load(MODELS / "tf_expected.npz")
    frames = [str(FRAMES_DIR / name) for name in FRAMES]
    done = racer("predict", str(PPO_TAR), *frames, "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "deepracer_discrete_ppo" and [p["image"] for p in result["predictions"]] == frames
    actions = json.loads(metadata_bytes())["action_space"]
    for entry, want in zip(result["predictions"], expected["discrete_ppo"], strict=True):
        assert np.abs(np.array(entry["output"]) - want).max() < 1e-5
        action = actions[entry["action"]]
        assert entry["action"] == int(want.argmax())
        assert (entry["steering_deg"], entry["speed_mps"]) == (action["steering_angle"], action["speed"])


def test_predict_continuous_has_no_action(racer):
    done = racer("predict", str(SAC_TAR), str(FRAMES_DIR / FRAMES[0]), "--json")
    [entry] = json.loads(done.stdout)["predictions"]
    assert entry["action"] is None and len(entry["output"]) == 2
    assert -30 <= entry["steering_deg"] <= 30 and 1 <= entry["speed_mps"] <= 2


def test_predict_human_form_on_stderr(racer):
    done = racer("predict", str(PPO_TAR), str(FRAMES_DIR / FRAMES[0]))
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.startswith("deepracer_discrete_ppo:\n  ") and " deg, speed " in done.stderr


def test_predict_refuses_bad_pictures_before_writing_heatmaps(racer, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    good = str(FRAMES_DIR / FRAMES[0])
    cases = [(text, f"{text} is not an image OpenCV can read"),
             (tmp_path / "gone.png", f"no such picture: {tmp_path / 'gone.png'}")]
    for bad, reason in cases:
        done = racer("predict", str(PPO_TAR), good, str(bad), "--explain", str(tmp_path / "heat"), "--json")
        assert done.returncode == 1 and json.loads(done.stdout) == {"ok": False, "reason": reason}
    assert not (tmp_path / "heat").exists()


def test_preprocess_preset_is_for_aws_exports_only(racer, tmp_path):
    out = tmp_path / "racer_bundle"
    assert racer("convert", str(PPO_TAR), "--out", str(out), "--preprocess", "area", "--json").returncode == 0
    assert json.loads((out / "racer.json").read_text())["preprocess"]["interpolation"] == "area"
    done = racer("predict", str(out), str(FRAMES_DIR / FRAMES[0]), "--preprocess", "stock", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["reason"] == ("racer_bundle carries its own preprocessing (racer.json); "
                                                 "presets are for AWS DeepRacer exports")
    usage = racer("predict", str(PPO_TAR), str(FRAMES_DIR / FRAMES[0]), "--preprocess", "bilinear")
    assert usage.returncode == 2 and "invalid choice: 'bilinear'" in usage.stderr


@pytest.mark.parametrize("out, reason", [
    ("model.zip", "--out {tmp}/model.zip: racer writes a bundle directory, or a .tar.gz; not a .zip file"),
    ("missing/dir/model.tar.gz", "--out {tmp}/missing/dir/model.tar.gz: the folder {tmp}/missing/dir does not exist"),
    ("missing/bundle", "--out {tmp}/missing/bundle: the folder {tmp}/missing does not exist"),
])
def test_convert_out_is_a_directory_or_a_tar_gz_in_an_existing_folder(racer, tmp_path, out, reason):
    done = racer("convert", str(SAC_TAR), "--out", str(tmp_path / out))
    assert done.returncode == 1
    assert done.stderr == f"racer model convert: {reason.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "missing").exists() and not (tmp_path / out).exists()  # no folder made on the way
