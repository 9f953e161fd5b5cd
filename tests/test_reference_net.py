"""The benchmark's reference network: DeepRacer SHALLOW shapes, a head fitted to steer like the expert."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from racer.bench.reference_net import ACTIONS, INPUT_SHAPE, build_reference_onnx, expert_frames


def test_reference_network_decides_like_the_expert_and_not_by_ties(tmp_path):
    path = build_reference_onnx(tmp_path / "reference.onnx", head_frames=600)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inp], [out] = session.get_inputs(), session.get_outputs()
    assert (tuple(inp.shape), tuple(out.shape)) == (INPUT_SHAPE, (1, ACTIONS))
    inputs, expert = expert_frames(200, seed=11)  # poses the fit never saw
    probs = np.concatenate([session.run(None, {inp.name: x})[0] for x in inputs])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(axis=1) == expert) > 0.7
    top2 = np.sort(probs, axis=1)[:, -2:]
    assert np.mean(top2[:, 1] - top2[:, 0] < 0.02) < 0.05
    again = build_reference_onnx(tmp_path / "again.onnx", head_frames=600)
    assert np.array_equal(again.read_bytes(), path.read_bytes())
