"""In-process transport: synchronous publish/subscribe, for tests and single-process runs."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


class LocalBus:
    def __init__(self) -> None:
        self._subs: dict[str, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        self._subs[topic].append(callback)

    def publisher(self, topic: str) -> Callable[[Any], None]:
        def publish(msg: Any) -> None:
            for callback in list(self._subs[topic]):
                callback(msg)
        return publish
