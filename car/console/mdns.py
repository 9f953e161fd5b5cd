"""mDNS (zeroconf): the car advertises its console, `racer discover` lists the cars on the network.

The advertisement carries the scheme and the certificate fingerprint so a user can compare what
`racer discover` shows with what the car printed. mDNS itself is unauthenticated, so `racer
discover` shows everything it heard as unverified and never takes the scheme from the record: a
car reached over the network is always https (the tools refuse plain HTTP beyond loopback), and
the tools pin the fingerprint they see on first contact, never the advertised one. A console
bound to loopback is not advertised: nobody else could reach it.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

import ifaddr
from zeroconf import ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

log = logging.getLogger("racer.console")

SERVICE_TYPE = "_racer._tcp.local."


@dataclass(frozen=True)
class CarService:
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


def addresses(bind_host: str) -> list[str]:
    """The addresses a console bound to `bind_host` answers on, loopback left out."""
    try:
        bound = ipaddress.ip_address(bind_host.strip("[]"))
    except ValueError:
        bound = ipaddress.ip_address(socket.gethostbyname(bind_host))
    if not bound.is_unspecified:
        return [str(bound)]
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
            if address.version == bound.version and not address.is_loopback and not address.is_link_local:
                found.append(str(address))
    return found


def service_info(bind_host: str, port: int, scheme: str, fingerprint: str | None) -> ServiceInfo:
    hostname = socket.gethostname() or "racer"
    return ServiceInfo(SERVICE_TYPE, f"{hostname}.{SERVICE_TYPE}", port=port, server=f"{hostname}.local.",
                       parsed_addresses=addresses(bind_host),
                       properties={"scheme": scheme, "fingerprint": fingerprint or "", "path": "/"})


def car_from_info(info: ServiceInfo) -> CarService:
    props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
    return CarService(name=info.name.removesuffix(f".{SERVICE_TYPE}"), host=(info.server or "").rstrip("."),
                      addresses=tuple(info.parsed_addresses()), port=info.port or 0,
                      fingerprint=props.get("fingerprint", ""))


class Advertisement:
    """The console's mDNS record while the car runs; failures only cost discoverability."""

    def __init__(self, info: ServiceInfo):
        self.info = info
        self.zeroconf: Zeroconf | None = None

    def start(self) -> None:
        try:
            self.zeroconf = Zeroconf()
            self.zeroconf.register_service(self.info)
        except OSError as exc:
            log.warning("console not advertised over mDNS: %s", exc)
            self.close()

    def close(self) -> None:
        if self.zeroconf is not None:
            self.zeroconf.close()
            self.zeroconf = None


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
