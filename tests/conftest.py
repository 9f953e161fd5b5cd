"""Shared fixtures."""
from pathlib import Path

import pytest

from aws_models import AwsModelsUnavailable, sample_model_dir


@pytest.fixture(scope="session")
def sample_model() -> Path:
    """Real AWS DeepRacer models (tests/aws_models.py); fails the test with one line if unavailable."""
    try:
        return sample_model_dir()
    except AwsModelsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
