"""The console's JSON answers: `{"success": true, ...}`, or `{"success": false, "reason": ...}` with a
real HTTP status (the DeepRacer console answers 200 to both; its field names are kept)."""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


def ok(**extra: Any) -> JSONResponse:
    return JSONResponse({"success": True, **extra})


def fail(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "reason": reason}, status_code=status, headers=headers)
