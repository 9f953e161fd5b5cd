"""Build the small AWS-DeepRacer-shaped frozen graphs in tests/fixtures/models/.

No real DeepRacer model.pb is small enough to ship (see fixtures PROVENANCE "Not found" #1), so
this writes graphs with the real node names and the SHALLOW layer structure (conv 8x8/4, 4x4/2,
3x3/1, dense, head) at a fraction of the width, and records TensorFlow's own outputs on three
simulator frames so the tests can check OpenVINO's conversion without TensorFlow.

One-off: run with a TensorFlow venv (`/tmp/tfvenv/bin/python tools/make_deepracer_pb.py`); the
project never depends on TensorFlow.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from car.policy.archive import write_tar_gz  # noqa: E402  (stdlib only, so it runs in the TensorFlow venv)

FIXTURES = REPO / "tests" / "fixtures" / "deepracer"
OUT = REPO / "tests" / "fixtures" / "models"
FRAMES = ("sim-image-3-00000.png", "sim-image-3-00350.png", "sim-image-3-00916.png")
SENSOR = "FRONT_FACING_CAMERA"
CONVS = ((8, 8, 4), (8, 4, 2), (8, 3, 1))
DENSE_UNITS = 16

PPO_SCOPE = "main_level/agent/main/online"
SAC_SCOPE = "main_level/agent/policy/online"


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _variable(scope: str, value: np.ndarray) -> tf.Tensor:
    """A frozen variable as TF 1.x freezing leaves it: a Const plus its `read` Identity."""
    const = tf.constant(value, name=scope)
    return tf.identity(const, name=f"{scope}/read")


def _dense(x: tf.Tensor, scope: str, units: int, rng: np.random.Generator) -> tf.Tensor:
    kernel = _variable(f"{scope}/kernel", _weights(rng, (int(x.shape[-1]), units)))
    bias = _variable(f"{scope}/bias", (rng.standard_normal(units) * 0.1).astype(np.float32))
    return tf.nn.bias_add(tf.matmul(x, kernel, name=f"{scope}/MatMul"), bias, name=f"{scope}/BiasAdd")


def _trunk(image: tf.Tensor, network: str, rng: np.random.Generator) -> tf.Tensor:
    """rl_coach image embedder (divide by 255, SHALLOW convs) and the dense middleware."""
    x = tf.truediv(image, 255.0, name=f"{network}/{SENSOR}/truediv")
    for i, (filters, size, stride) in enumerate(CONVS):
        scope = f"{network}/{SENSOR}/Conv2d_{i}"
        kernel = _variable(f"{scope}/kernel", _weights(rng, (size, size, int(x.shape[-1]), filters)))
        bias = _variable(f"{scope}/bias", np.full(filters, 0.01, dtype=np.float32))
        x = tf.nn.conv2d(x, kernel, strides=stride, padding="VALID", name=f"{scope}/Conv2D")
        x = tf.nn.relu(tf.nn.bias_add(x, bias, name=f"{scope}/BiasAdd"), name=f"{scope}/Relu")
    x = tf.reshape(x, (-1, int(np.prod(x.shape[1:]))), name=f"{network}/{SENSOR}/Flatten/flatten/Reshape")
    x = _dense(x, f"{network}/middleware_fc_embedder/Dense_0", DENSE_UNITS, rng)
    return tf.nn.relu(x, name=f"{network}/middleware_fc_embedder/Dense_0/Relu")


def _placeholder(scope: str) -> tf.Tensor:
    return tf.compat.v1.placeholder(tf.float32, (None, 120, 160, 1), name=f"{scope}/network_0/{SENSOR}/{SENSOR}")


def discrete_ppo(actions: int, seed: int) -> tuple[tf.Graph, str, str]:
    """Clipped PPO: the placeholder lives in network_0, the policy head in network_1."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        image = _placeholder(PPO_SCOPE)
        hidden = _trunk(image, f"{PPO_SCOPE}/network_1", rng)
        logits = _dense(hidden, f"{PPO_SCOPE}/network_1/ppo_head_0/policy_fc", actions, rng)
        policy = tf.nn.softmax(logits, name=f"{PPO_SCOPE}/network_1/ppo_head_0/policy")
    return graph, image.op.name, policy.op.name


def continuous_sac(seed: int) -> tuple[tf.Graph, str, str]:
    """SAC: the policy head outputs the pre-tanh (steering, speed) means."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        image = _placeholder(SAC_SCOPE)
        hidden = _trunk(image, f"{SAC_SCOPE}/network_0", rng)
        head = f"{SAC_SCOPE}/network_0/sac_policy_head_0"
        mean = _dense(hidden, f"{head}/policy_mu", 2, rng)
        _dense(hidden, f"{head}/policy_log_std", 2, rng)
        policy = tf.identity(mean, name=f"{head}/policy")
    return graph, image.op.name, policy.op.name


def grey_frames() -> np.ndarray:
    """The three frames as 1x120x160x1 uint8 grey, BT.601 weights rounded like cv2."""
    out = []
    for name in FRAMES:
        rgb = tf.io.decode_png(tf.io.read_file(str(FIXTURES / "images" / "sim_160x120_episode" / name)), channels=3)
        rgb = rgb.numpy().astype(np.float64)
        grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        out.append(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[None, :, :, None])
    return np.stack(out)


def run(graph: tf.Graph, input_name: str, output_name: str, frames: np.ndarray) -> np.ndarray:
    with tf.compat.v1.Session(graph=graph) as sess:
        return np.stack([
            sess.run(f"{output_name}:0", {f"{input_name}:0": frame.astype(np.float32)})[0] for frame in frames
        ])


def main() -> None:
    frames = grey_frames()
    OUT.mkdir(parents=True, exist_ok=True)
    ppo_meta = (FIXTURES / "model_metadata" / "drfc_default_discrete_ppo_v5.json").read_bytes()
    sac_meta = (FIXTURES / "model_metadata" / "drfc_default_continuous_sac_v4.json").read_bytes()
    # agent/model.pb is the layout of DeepRacer-for-Cloud's create-car-zip.sh; model.pb at the root
    # is that of the factory sample models (artifacts/Sample_*/model.pb on the car).
    models = {
        "discrete_ppo": (discrete_ppo(len(json.loads(ppo_meta)["action_space"]), seed=2), "agent/model.pb", ppo_meta),
        "continuous_sac": (continuous_sac(seed=3), "model.pb", sac_meta),
    }
    expected: dict[str, np.ndarray] = {"inputs": frames}
    for key, ((graph, input_name, output_name), pb_name, meta) in models.items():
        pb = graph.as_graph_def().SerializeToString(deterministic=True)
        write_tar_gz(OUT / f"deepracer_{key}.tar.gz", {pb_name: pb, "model_metadata.json": meta})
        expected[key] = run(graph, input_name, output_name, frames)
        print(f"{key}: {len(pb)} bytes, input {input_name}, output {output_name}")
        print(expected[key])
    np.savez_compressed(OUT / "tf_expected.npz", **expected)


if __name__ == "__main__":
    main()
