"""The safety watchdog: any fault puts the outputs at neutral.

Faults are either heartbeats that went quiet (camera frames, drive commands) or latched events
(a policy error, an exception). All times come from the node clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Watchdog:
    timeouts: dict[str, float]
    _beats: dict[str, float] = field(default_factory=dict)
    _events: dict[str, str] = field(default_factory=dict)
    _armed: set[str] = field(default_factory=set)

    def beat(self, name: str, now: float) -> None:
        """A heartbeat; monitoring of `name` starts with its first beat."""
        if name not in self.timeouts:
            raise KeyError(f"watchdog has no heartbeat {name!r}")
        self._beats[name] = now
        self._armed.add(name)

    def disarm(self, name: str) -> None:
        self._armed.discard(name)
        self._beats.pop(name, None)

    def fault(self, name: str, reason: str) -> None:
        self._events[name] = reason

    def clear(self, name: str) -> None:
        self._events.pop(name, None)

    def faults(self, now: float) -> dict[str, str]:
        out = dict(self._events)
        for name in self._armed:
            age = now - self._beats[name]
            if age > self.timeouts[name]:
                out[name] = f"{name} stale for {age * 1000:.0f} ms (limit {self.timeouts[name] * 1000:.0f} ms)"
        return out

    def ok(self, now: float) -> bool:
        return not self.faults(now)
