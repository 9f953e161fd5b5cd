"""Training-only augmentation: presets, determinism, preview command, throughput figure, and the
car never importing the training stack."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from s2r_cli import racer_s2r
from sim2real.augment import LABEL_BAND, PRESETS, AugmentationError, Augmenter, bench_augment, sample_frames


@pytest.fixture(scope="module")
def frames():
    return sample_frames(8)


def test_presets_scale_the_change(frames):
    assert PRESETS == ("none", "light", "default", "strong")
    change = {}
    for preset in PRESETS:
        augment = Augmenter(preset, seed=0)
        out = [augment(f) for f in frames for _ in range(5)]
        assert all(o.shape == (120, 160, 3) and o.dtype == np.uint8 for o in out)
        change[preset] = np.mean([np.abs(o.astype(int) - f).mean()
                                  for o, f in zip(out, np.repeat(frames, 5, 0), strict=True)])
    assert change["none"] == 0.0
    assert change["light"] < change["default"] < change["strong"]


def test_same_seed_same_augmentation(frames):
    a, b, c = Augmenter("default", 3), Augmenter("default", 3), Augmenter("default", 4)
    first = [a(f) for f in frames]
    assert all(np.array_equal(x, b(f)) for x, f in zip(first, frames, strict=True))
    assert not all(np.array_equal(x, c(f)) for x, f in zip(first, frames, strict=True))


def test_bad_preset_and_bad_input():
    with pytest.raises(AugmentationError, match="unknown augmentation preset 'wild'"):
        Augmenter("wild")
    with pytest.raises(ValueError, match="expected an HxWx3 uint8 image"):
        Augmenter()(np.zeros((120, 160), np.uint8))


def test_preview_command_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert racer_s2r("augment", "preview", "--out", str(out), "--rows", "2", "--cols", "3") == 0
    grid = cv2.imread(str(out))
    band = LABEL_BAND
    assert grid.shape == (band + 2 * 120 + 2, 3 * 160 + 4, 3)
    # under the title band, the first column is the untouched simulator frame
    assert np.array_equal(grid[band:band + 120, :160], sample_frames(1)[0])
    # the band carries dark title text over the original column and over the augmented ones
    assert (grid[:band, :160] < 128).any() and (grid[:band, 162:322] < 128).any()
    assert racer_s2r("augment", "preview", "--out", str(out), "--preset", "wild") == 2
    assert "unknown augmentation preset 'wild'" in capsys.readouterr().err


def test_bench_augment_reports_images_per_second():
    result = bench_augment(seconds=0.3)
    assert result["images_per_s"] > 100 and result["preset"] == "default"
    assert (result["width"], result["height"]) == (160, 120)


def test_the_car_never_imports_the_training_stack():
    # list(): a snapshot of sys.modules, which a library thread may still be adding to
    code = ("import sys, car.graph.stack, car.policy.shift, car.policy.core, car.policy.inference, car.policy.bundle\n"
            "bad = sorted(m for m in list(sys.modules) if m.split('.')[0] in "
            "('sim2real', 'torch', 'gymnasium', 'albumentations'))\n"
            "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
