"""Settings every test shares."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty default state dir ($XDG_STATE_HOME/racer) per test, inherited by subprocesses, so a
    calibration or password saved on the developer's machine never changes a result."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
