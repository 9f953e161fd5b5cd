"""model_metadata.json: every published schema version loads; bad files fail with a clear one-line reason."""
from __future__ import annotations

import json

import pytest

from car.policy.metadata import Action, MetadataError, Range, load_metadata, parse_metadata
from model_factory import METADATA_DIR

FRONT = ("FRONT_FACING_CAMERA",)
SHALLOW, DEEP = "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW", "DEEP_CONVOLUTIONAL_NETWORK"
# file: (type, algorithm, discrete action count or (steering, speed) ranges, sensors, network, version)
FIXTURES = {
    "deepracer_utils_drfc1_discrete_indexed_v4.json": ("discrete", "clipped_ppo", 14, FRONT, SHALLOW, "4"),
    "deepracer_utils_sample_model_discrete_v3.json": ("discrete", "clipped_ppo", 12, FRONT, SHALLOW, "3"),
    "drfc_default_discrete_ppo_v5.json": ("discrete", "clipped_ppo", 5, FRONT, SHALLOW, "5"),
    "drfc_default_continuous_ppo_v5.json": ("continuous", "clipped_ppo", ((-30, 30), (1, 2)), FRONT, SHALLOW, "5"),
    "drfc_default_continuous_sac_v4.json": ("continuous", "sac", ((-30, 30), (1, 2)), FRONT, SHALLOW, "4"),
    "guidance_front_shallow_continuous_ppo_v4.json":
        ("continuous", "clipped_ppo", ((-30, 30), (0.5, 2)), FRONT, SHALLOW, "4"),
    "guidance_front_shallow_continuous_sac_greyscale.json":
        ("continuous", "sac", ((-30, 30), (0.5, 1)), FRONT, SHALLOW, None),
    "guidance_front_lidar_shallow_single_speed_5steering.json":
        ("discrete", "clipped_ppo", 5, FRONT + ("LIDAR",), SHALLOW, None),
    "guidance_stereo_lidar_deep_two_speed_5steering.json":
        ("discrete", "clipped_ppo", 10, ("STEREO_CAMERAS", "LIDAR"), DEEP, None),
}


def test_every_fixture_is_covered():
    assert sorted(p.name for p in METADATA_DIR.glob("*.json")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_loads(name):
    kind, algorithm, space, sensors, network, version = FIXTURES[name]
    meta = load_metadata(METADATA_DIR / name)
    assert (meta.action_space_type, meta.training_algorithm, meta.sensors, meta.neural_network, meta.version) == (
        kind, algorithm, sensors, network, version)
    if kind == "discrete":
        assert len(meta.actions) == space == meta.output_size()
        assert meta.steering is None and meta.speed is None
    else:
        assert (meta.steering, meta.speed) == (Range(*space[0]), Range(*space[1]))
        assert meta.actions == () and meta.output_size() == 2
    assert meta.max_steering_deg == 30


def test_legacy_file_defaults_to_discrete_clipped_ppo():
    meta = load_metadata(METADATA_DIR / "guidance_front_lidar_shallow_single_speed_5steering.json")
    assert "action_space_type" not in meta.raw and "training_algorithm" not in meta.raw
    assert meta.discrete and meta.training_algorithm == "clipped_ppo"
    assert meta.actions[0] == Action(-30.0, 1.0) and meta.max_speed == 1.0


def test_missing_sensor_is_the_legacy_camera_and_network_shallow():
    # The stock console shows such models' sensor as "Camera", its name for OBSERVATION.
    meta = parse_metadata({"action_space": [{"steering_angle": 10, "speed": 1}]})
    assert meta.sensors == ("OBSERVATION",) and meta.camera_sensor == "OBSERVATION"
    assert meta.neural_network == "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW" and meta.version is None


def test_indexed_fixture_decodes_by_list_position():
    meta = load_metadata(METADATA_DIR / "deepracer_utils_drfc1_discrete_indexed_v4.json")
    assert meta.actions[0] == Action(-30.0, 1.0)
    assert meta.actions[7] == Action(0.0, 2.0)
    assert meta.actions[13] == Action(30.0, 2.0)


def test_index_keys_do_not_reorder_the_actions():
    # Output i is action_space[i] in the AWS simulator and on the stock car, whatever `index` says.
    meta = parse_metadata({"action_space": [
        {"steering_angle": 0, "speed": 2, "index": 1},
        {"steering_angle": -30, "speed": 1, "index": 0},
    ]})
    assert meta.actions == (Action(0.0, 2.0), Action(-30.0, 1.0))


@pytest.mark.parametrize("indexes", [(1, 2, 3), (0, 0, 0), (5, "a", None)], ids=["1-based", "repeated", "junk"])
def test_any_index_labels_load(indexes):
    meta = parse_metadata({"action_space": [{"steering_angle": a, "speed": 1, "index": i}
                                            for a, i in zip((-30, 0, 30), indexes, strict=True)]})
    assert [a.steering_deg for a in meta.actions] == [-30.0, 0.0, 30.0]


def test_stereo_camera_is_the_camera_sensor():
    meta = load_metadata(METADATA_DIR / "guidance_stereo_lidar_deep_two_speed_5steering.json")
    assert meta.camera_sensor == "STEREO_CAMERAS"


DISCRETE = [{"steering_angle": -30, "speed": 1}, {"steering_angle": 30, "speed": 2}]
CONTINUOUS = {"steering_angle": {"low": -30, "high": 30}, "speed": {"low": 1, "high": 2}}

BAD = [
    ("not an object", [1, 2], "model_metadata.json must hold a JSON object"),
    ("empty action space", {"action_space": []}, "discrete action_space must be a non-empty list"),
    ("discrete space as object", {"action_space": CONTINUOUS}, "discrete action_space must be a non-empty list"),
    ("continuous space as list", {"action_space": DISCRETE, "action_space_type": "continuous"},
     "continuous action_space must be an object with steering_angle and speed"),
    ("unknown type", {"action_space": DISCRETE, "action_space_type": "hybrid"},
     "action_space_type must be discrete or continuous, got 'hybrid'"),
    ("unknown algorithm", {"action_space": DISCRETE, "training_algorithm": "dqn"},
     "training_algorithm must be one of clipped_ppo, sac, got 'dqn'"),
    ("unknown sensor", {"action_space": DISCRETE, "sensor": ["SONAR"]}, "unknown sensor 'SONAR'"),
    ("sensor not a list", {"action_space": DISCRETE, "sensor": 5}, "sensor must be a non-empty list"),
    ("empty sensor list", {"action_space": DISCRETE, "sensor": []}, "sensor must be a non-empty list"),
    ("speed as text", {"action_space": [{"steering_angle": 0, "speed": "fast"}]},
     "action_space[0].speed must be a number, got 'fast'"),
    ("steering as bool", {"action_space": [{"steering_angle": True, "speed": 1}]},
     "action_space[0].steering_angle must be a number, got True"),
    ("missing speed", {"action_space": [{"steering_angle": 0}]}, "action_space[0] needs steering_angle and speed"),
    ("low above high",
     {"action_space": {**CONTINUOUS, "speed": {"low": 2, "high": 1}}, "action_space_type": "continuous"},
     "action_space.speed: low 2.0 must be below high 1.0"),
    ("low equals high",
     {"action_space": {**CONTINUOUS, "steering_angle": {"low": 5, "high": 5}}, "action_space_type": "continuous"},
     "action_space.steering_angle: low 5.0 must be below high 5.0"),
    ("range without high", {"action_space": {**CONTINUOUS, "speed": {"low": 1}}, "action_space_type": "continuous"},
     "continuous action_space.speed needs low and high"),
]


@pytest.mark.parametrize("data, reason", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata(data, reason):
    with pytest.raises(MetadataError) as err:
        parse_metadata(data)
    assert str(err.value).startswith(reason) and "\n" not in str(err.value)


def test_nan_literal_in_json_is_refused(tmp_path):
    path = tmp_path / "model_metadata.json"
    path.write_text('{"action_space": [{"steering_angle": 0, "speed": NaN}]}')
    assert json.loads(path.read_text())["action_space"][0]["speed"] != 0
    with pytest.raises(MetadataError, match=r"^action_space\[0\]\.speed must be finite, got nan$"):
        load_metadata(path)


def test_infinite_continuous_bound_is_refused():
    data = {"action_space": {**CONTINUOUS, "speed": {"low": 1, "high": float("inf")}},
            "action_space_type": "continuous"}
    with pytest.raises(MetadataError, match="action_space.speed.high must be finite"):
        parse_metadata(data)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "model_metadata.json"
    path.write_text('{"action_space": [')
    with pytest.raises(MetadataError, match="^model_metadata.json is not valid JSON: .* at line 1$"):
        load_metadata(path)
    with pytest.raises(MetadataError, match="^cannot read model_metadata.json"):
        load_metadata(tmp_path / "missing.json")


def test_console_shows_a_model_without_sensor_as_camera(tmp_path):
    from car.console.models import ModelStore

    for folder, extra in (("old", {}), ("new", {"sensor": ["FRONT_FACING_CAMERA"]})):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.pb").write_bytes(b"")
        (tmp_path / folder / "model_metadata.json").write_text(json.dumps({"action_space": DISCRETE, **extra}))
    listed = {m.folder: m.to_json() for m in ModelStore(tmp_path, tmp_path / "cache").list()}
    assert listed["old"]["model_sensors"] == ["Camera"] and not listed["old"]["is_select_disabled"]
    assert listed["new"]["model_sensors"] == ["Front-facing camera"]
