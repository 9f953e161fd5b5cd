"""`racer discover`: the racer cars that advertise their console over mDNS on the local network.

mDNS is unauthenticated, so what is heard is shown as unverified and the scheme is never taken
from the record: a car reached over the network is always https (the tools refuse plain HTTP
beyond loopback), and the tools pin the fingerprint they see on first contact, never the
advertised one. The record itself is the car's (`car/console/mdns.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from zeroconf import ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

from car.console.mdns import SERVICE_TYPE


@dataclass(frozen=True)
class CarService:
    """One car heard: its mDNS name, host name, addresses, console port and the fingerprint it advertised."""

    name: str
    host: str
    addresses: tuple[str, ...]
    port: int
    fingerprint: str

    @property
    def url(self) -> str:
        """Always https: the record's scheme is not authenticated, so it is not trusted."""
        address = self.addresses[0] if self.addresses else self.host
        host = f"[{address}]" if ":" in address else address
        return f"https://{host}:{self.port}"


def car_from_info(info: ServiceInfo) -> CarService:
    props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
    return CarService(name=info.name.removesuffix(f".{SERVICE_TYPE}"), host=(info.server or "").rstrip("."),
                      addresses=tuple(info.parsed_addresses()), port=info.port or 0,
                      fingerprint=props.get("fingerprint", ""))


class _Collector(ServiceListener):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.discard(name)


def discover(timeout_s: float) -> list[CarService]:
    """The racer consoles that answer on the local network within `timeout_s`."""
    zeroconf = Zeroconf()
    try:
        collector = _Collector()
        browser = ServiceBrowser(zeroconf, SERVICE_TYPE, collector)
        time.sleep(timeout_s)
        browser.cancel()
        cars = []
        for name in sorted(collector.names):
            info = zeroconf.get_service_info(SERVICE_TYPE, name, timeout=1000)
            if info is not None:
                cars.append(car_from_info(info))
        return cars
    finally:
        zeroconf.close()
