"""mDNS (zeroconf): the car advertises its console, so `racer discover` (`racer/laptop/discovery.py`)
lists it.

The advertisement carries the scheme and the certificate fingerprint so a user can compare what
`racer discover` shows with what the car printed; mDNS is unauthenticated, so the laptop shows it
as unverified. A console bound to loopback is not advertised: nobody else could reach it.
"""
from __future__ import annotations

import ipaddress
import logging
import socket

import ifaddr
from zeroconf import ServiceInfo, Zeroconf

log = logging.getLogger("racer.console")

SERVICE_TYPE = "_racer._tcp.local."


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
