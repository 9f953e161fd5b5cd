"""The Foxglove view as a node of the car graph: what `racer car --foxglove`, `racer node foxglove` and
`racer demo --foxglove` start, on the graph's bus (the in-process one, or its own process's on dds and ros)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from car.foxglove.node import FoxgloveNode


def foxglove_address(address: str, state_dir: Path | None) -> tuple[str, int, Any]:
    """(host, port, token check) for `--foxglove HOST:PORT`: ValueError (one line) for a malformed address, a
    missing SDK, or an address beyond loopback while the console (`state_dir`) has no API token."""
    from car.console.server import parse_address
    from car.console.state import default_state_dir
    from car.foxglove.node import require_sdk, token_check

    require_sdk()
    host, port = parse_address(address)
    return host, port, token_check(host, port, state_dir or default_state_dir())


def start_car_foxglove(address: str, state_dir: Path | None, bus: Any) -> FoxgloveNode:
    """The foxglove node on `bus` (before it spins); ValueError as `foxglove_address`, OSError when the port
    is taken."""
    from car.foxglove.node import FoxgloveNode

    host, port, check = foxglove_address(address, state_dir)
    return FoxgloveNode(bus, host, port, check)
