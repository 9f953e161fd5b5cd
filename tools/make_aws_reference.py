"""TensorFlow's own outputs of the real AWS DeepRacer models, for tests/fixtures/models/aws_sample_tf.npz.

The three PPO checkpoints and pictures of the deepracer-utils==1.5.6 sdist (tests/aws_models.py
fetches them) are run by TensorFlow itself, on inputs made as the stock car's inference node makes
them: the 640x480 picture resized to 160x120 with OpenCV's default (INTER_LINEAR), then
COLOR_BGR2GRAY to 8-bit grey, fed raw 0..255 as 1x120x160x1 float (the graph divides by 255).
Only those inputs and the softmax outputs are committed, never the models.

One-off: run with a throwaway TensorFlow venv (tensorflow-cpu, opencv-python-headless):
`/tmp/tfvenv/bin/python tools/make_aws_reference.py`; the project never depends on TensorFlow.
Some nodes of the AWS graphs are pinned to /device:GPU:0, so the session allows soft placement.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from aws_models import CHECKPOINTS, PICTURES, sample_model_dir  # noqa: E402  (stdlib only)

OUT = REPO / "tests" / "fixtures" / "models" / "aws_sample_tf.npz"
INPUT = "main_level/agent/main/online/network_0/FRONT_FACING_CAMERA/FRONT_FACING_CAMERA:0"
OUTPUT = "main_level/agent/main/online/network_1/ppo_head_0/policy:0"


def stock_car_input(png: Path) -> np.ndarray:
    """1x120x160x1 uint8: the stock car's resize (INTER_LINEAR) then 8-bit BGR2GRAY."""
    bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
    small = cv2.resize(bgr, (160, 120))
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)[None, :, :, None]


def run_checkpoint(pb: Path, inputs: np.ndarray) -> np.ndarray:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True, device_count={"GPU": 0})
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        return np.stack([sess.run(OUTPUT, {INPUT: x.astype(np.float32)})[0] for x in inputs]).astype(np.float32)


def main() -> None:
    root = sample_model_dir()
    inputs = np.stack([stock_car_input(root / "pictures" / name) for name in PICTURES])
    result: dict[str, np.ndarray] = {"pictures": np.array(PICTURES), "inputs": inputs}
    for checkpoint in CHECKPOINTS:
        out = run_checkpoint(root / "model" / f"model_{checkpoint}.pb", inputs)
        result[f"model_{checkpoint}"] = out
        print(f"model_{checkpoint}: argmax {out.argmax(axis=1).tolist()}, sums {out.sum(axis=1).round(6).tolist()}")
    np.savez_compressed(OUT, **result)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), TensorFlow {tf.__version__}, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
