"""The console's audit trail: one structured line in the car's log per change a user makes.

Each line reads `console event {"event": NAME, ...}` with the fields as one JSON object (newlines
and hostile text escaped, so a line is always one line): mode changes, start/stop, emergency
stops, model installs and loads and their failures, failed uploads, calibration saves, logins
and token changes. Secrets are never passed in.
"""
from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("racer.console")


def event(kind: str, /, **fields: Any) -> None:
    log.info("console event %s", json.dumps({"event": kind, **fields}, default=str))
