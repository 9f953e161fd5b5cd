"""`racer model inspect|check|convert` as a user runs them: a subprocess, JSON on stdout, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from car.bundle import load_bundle
from car.inference import Policy
from model_factory import MODELS, PPO_TAR, SAC_TAR, metadata_bytes, pb_bytes, write_tar


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


def test_check_refuses_a_lidar_model_with_the_reason(racer, tmp_path):
    meta = json.loads(metadata_bytes())
    meta["sensor"] = ["FRONT_FACING_CAMERA", "LIDAR"]
    path = write_tar(tmp_path / "lidar.tar.gz", {"model.pb": pb_bytes(), "model_metadata.json": json.dumps(meta).encode()})
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


def test_convert_to_a_non_empty_directory_fails_cleanly(racer, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    done = racer("convert", str(SAC_TAR), "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"ok": False, "reason": f"{tmp_path / 'out'} exists and is not an empty directory"}


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
