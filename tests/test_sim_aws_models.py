"""The real AWS-trained models (deepracer-utils 1.5.6 sample models 15, 30, 48) see racer's
renders as they saw the AWS simulator's Gazebo frames: their outputs on both agree."""
import shutil

import cv2
import numpy as np
import pytest

from aws_models import sample_model_dir
from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from car.policy.preprocess import Preprocessor
from sim2real.sim.render import Renderer
from sim2real.sim.track import Track

# Car poses (x m, y m, yaw rad) fitted to the Gazebo frames dr-demo-1..3 (docs/gap.md shows the frames beside
# racer's renders at these poses; docs/simulator.md has the simulator's measured facts).
POSES = {1: (5.009, 0.592, 0.011), 2: (5.052, 2.893, 2.760), 3: (1.401, 4.341, -2.623)}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Per model and picture: (output on the Gazebo frame, output on racer's render)."""
    sample = sample_model_dir()
    renderer = Renderer(Track.load("reinvent_base"))
    result = {}
    for number in (15, 30, 48):
        folder = tmp_path_factory.mktemp(f"model_{number}")
        shutil.copy(sample / "model" / f"model_{number}.pb", folder / "model.pb")
        shutil.copy(sample / "model" / "model_metadata.json", folder)
        with load_bundle(folder) as bundle:
            policy = Policy(bundle)
            for picture, pose in POSES.items():
                gazebo = cv2.imread(str(sample / "pictures" / f"dr-demo-{picture}.png"), cv2.IMREAD_COLOR)
                pair = [policy.infer(Preprocessor(bundle.spec)(image)).reshape(-1)
                        for image in (gazebo, renderer.render(*pose))]
                result[number, picture] = pair
    return result


def test_the_real_models_agree_on_renders_and_gazebo_frames(outputs):
    total_variation = [0.5 * np.abs(gazebo - ours).sum() for gazebo, ours in outputs.values()]
    same_action = sum(int(gazebo.argmax() == ours.argmax()) for gazebo, ours in outputs.values())
    # The bar; racer's earlier world scored 0.43 and 3 of 9.
    assert np.mean(total_variation) <= 0.15
    assert same_action >= 8
