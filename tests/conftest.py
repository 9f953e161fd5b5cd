"""Settings and fixtures every test shares."""
from __future__ import annotations

from pathlib import Path

import pytest

import car  # noqa: F401  (first: declines OpenVINO's usage reports before a test imports openvino)
from aws_models import AwsModelsUnavailable, sample_model_dir


@pytest.fixture(autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty default state dir ($XDG_STATE_HOME/racer) per test, inherited by subprocesses, so a
    calibration or password saved on the developer's machine never changes a result."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture(scope="session")
def sample_model() -> Path:
    """Real AWS DeepRacer models (tests/aws_models.py); fails the test with one line if unavailable."""
    try:
        return sample_model_dir()
    except AwsModelsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
