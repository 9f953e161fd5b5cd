"""Request bodies: a JSON object parsed within bounds, then read field by field with typed checks.

Every route reads its body through these, so hostile JSON (huge integers, numbers past Python's
4,300-digit limit, NaN and Infinity, deep nesting, a value of the wrong type) is answered 400 with
a reason naming the field, never 500. Keys a route does not read are ignored, as the DeepRacer
console ignores them.
"""
from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from car.console.errors import ApiError
from car.control.modes import brief

MAX_JSON_BODY = 64 << 10
MAX_DEPTH = 8


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), iteratively: no recursion limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_object(data: bytes | str, what: str = "the request body") -> dict[str, Any]:
    """`data` as a JSON object nested at most MAX_DEPTH deep; ApiError(400) with the reason, naming
    `what`, otherwise."""
    try:
        value = json.loads(data or "null", parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(400, f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digits limit, NaN, bad UTF-8
        raise ApiError(400, f"{what} must be a JSON object ({brief(str(exc), 80)})") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{what} must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise ApiError(400, f"{what} is nested deeper than {MAX_DEPTH} levels")
    return value


async def read_object(stream: AsyncIterator[bytes], limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """A request body of at most `limit` bytes (413 beyond) parsed by `parse_object`."""
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
    return parse_object(bytes(body))


def number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    """body[key] as a finite float within low..high (JSON integers and floats; not booleans)."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{key} must be a number, got {brief(value)}")
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise ApiError(400, f"{key} must be within {low:g}..{high:g}, got {brief(value)}")
    return float(value)


def choice(body: dict[str, Any], key: str, options: Sequence[str | int]) -> Any:
    """body[key] when it is one of `options`, of the same type (true is not 1)."""
    value = body.get(key)
    if not any(type(value) is type(option) and value == option for option in options):
        raise ApiError(400, f"{key} must be one of {', '.join(map(str, options))}, got {brief(value)}")
    return value


def text(body: dict[str, Any], key: str, max_length: int) -> str:
    """body[key] as a non-blank string of at most `max_length` characters, stripped."""
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key} must be a non-empty string, got {brief(value)}")
    if len(value) > max_length:
        raise ApiError(400, f"{key} must be at most {max_length} characters")
    return value.strip()


def text_list(body: dict[str, Any], key: str, max_items: int, max_length: int) -> list[str]:
    """body[key] as a non-empty list of at most `max_items` strings of at most `max_length` characters."""
    value = body.get(key)
    if not isinstance(value, list) or not value or len(value) > max_items \
            or not all(isinstance(item, str) and 0 < len(item) <= max_length for item in value):
        raise ApiError(400, f"{key} must be a list of 1..{max_items} names of at most {max_length} characters, "
                            f"got {brief(value)}")
    return value


def optional_integer(body: dict[str, Any], key: str, low: int, high: int, default: int) -> int:
    """body[key] as an integer within low..high, `default` when the key is absent."""
    if key not in body:
        return default
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{key} must be a whole number within {low}..{high}, got {brief(value)}")
    return value
