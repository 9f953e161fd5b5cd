"""Command multiplexer: the latest command of each source, each with its own timeout."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    timeout: float
    msg: T | None = None
    received: float = float("-inf")


class Mux(Generic[T]):
    def __init__(self, timeouts: dict[str, float]):
        for name, timeout in timeouts.items():
            if timeout <= 0:
                raise ValueError(f"mux timeout for {name!r} must be positive, got {timeout}")
        self._slots = {name: _Slot[T](timeout) for name, timeout in timeouts.items()}

    def put(self, source: str, msg: T, now: float) -> None:
        slot = self._slots[source]
        slot.msg, slot.received = msg, now

    def get(self, source: str, now: float) -> T | None:
        """The source's latest command, or None when it has none or it is older than its timeout."""
        slot = self._slots[source]
        if slot.msg is None or now - slot.received > slot.timeout:
            return None
        return slot.msg

    def age(self, source: str, now: float) -> float:
        return now - self._slots[source].received

    def clear(self, source: str | None = None) -> None:
        for name, slot in self._slots.items():
            if source is None or name == source:
                slot.msg, slot.received = None, float("-inf")
