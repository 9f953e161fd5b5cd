"""The car's ROS 2 parameter file: merge rules and every way it can be wrong."""
import pytest

from car.config import DEFAULT_PARAMS, load_params


def test_shipped_params_merge_the_wildcard_into_each_node():
    params = load_params()
    assert params["actuator"]["max_speed_mps"] == 4.0 and params["policy"]["max_steering_rad"] == 0.5236
    assert params["control"]["max_speed"] == 0.5
    assert load_params(DEFAULT_PARAMS) == params


def test_node_value_overrides_wildcard(tmp_path):
    f = tmp_path / "car.yaml"
    f.write_text("/**:\n  ros__parameters:\n    max_speed_mps: 3.0\n"
                 "actuator:\n  ros__parameters:\n    max_speed_mps: 2.0\n")
    params = load_params(f)
    assert params["actuator"]["max_speed_mps"] == 2.0 and params["control"]["max_speed_mps"] == 3.0


@pytest.mark.parametrize("text, message", [
    ("camera: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping of node names"),
    ("planner:\n  ros__parameters: {}\n", "unknown node(s) planner"),
    ("control:\n  max_speed: 0.5\n", "control must hold only ros__parameters"),
    ("control:\n  ros__parameters: [1]\n", "control.ros__parameters must be a mapping"),
])
def test_bad_params_files_are_one_line_errors(tmp_path, text, message):
    f = tmp_path / "car.yaml"
    f.write_text(text)
    with pytest.raises(ValueError) as caught:
        load_params(f)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_params_file_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.yaml: cannot read: No such file"):
        load_params(tmp_path / "nope.yaml")
