"""Shared fixtures: ``sample_model`` (real AWS DeepRacer models, tests/aws_models.py)."""
from aws_models import sample_model  # noqa: F401
