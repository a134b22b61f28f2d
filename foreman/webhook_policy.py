"""Which addresses a webhook may reach (docs/contract.md section 5): `webhook_allow` parsed, and
the endpoints refused whatever it says (foreman's own listen addresses and its target's).

Used at submit (`WebhookClient.check_url`) and again at connect time (`webhook_transport`'s
resolver), so a name that later resolves elsewhere is still refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from foreman.browser import is_local_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused by default: the cloud metadata endpoint lives in link-local, and the others are
# not a single receiver. A listed CIDR opens one only if it lies inside it (`169.254.0.0/16`
# does, `0.0.0.0/0` does not), so a broad allow list never exposes them by accident.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
        ("0.0.0.0/32", "unspecified"),
        ("::/128", "unspecified"),
    )
)


class AddressRefused(OSError):
    """Raised by the resolver at connect time: the host resolves only to refused addresses."""


def address(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:169.254.169.254 reaches the IPv4 address: judge it as that.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Policy:
    """`webhook_allow` parsed: which hosts and addresses a webhook may reach."""

    def __init__(self, allow: tuple[str, ...] | None) -> None:
        self.listed = allow is not None
        self.networks: list[IPNetwork] = []
        self.names: list[str] = []
        for item in allow or ():
            try:
                self.networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                self.names.append(item.strip().lower().rstrip("."))

    def name_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in self.names)

    def refusal(self, ip: IPAddress, name_listed: bool = False) -> str | None:
        """Why foreman will not connect to `ip`, or None when it may."""
        for special, why in _SPECIAL:
            if ip in special:
                explicit = any(ip in net and net.subnet_of(special) for net in self.networks)  # type: ignore[arg-type]
                return None if explicit else f"a {why} address"
        if not self.listed or name_listed or any(ip in net for net in self.networks):
            return None
        return "outside webhook_allow"


def port_of(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


def _this_host(ip: IPAddress) -> bool:
    """`ip` reaches this machine (0.0.0.0 does, on Linux and macOS)."""
    return ip.is_loopback or ip.is_unspecified or is_local_address(ip)


class Reserved:
    """The endpoints no webhook may reach, `webhook_allow` or not: foreman's own listen addresses
    (as bound: an unspecified one is every address of this machine) and the target's."""

    def __init__(self, own: Sequence[tuple[str, int]], target_url: str | None) -> None:
        self._own = [(ip, port) for host, port in own if (ip := address(host)) is not None]
        self._target: tuple[str, int] | None = None
        if target_url:
            parts = urlsplit(target_url)
            if parts.hostname:
                self._target = (parts.hostname.lower().rstrip("."), port_of(parts.scheme, parts.port))

    async def refusal(self, host: str, port: int, ips: Sequence[IPAddress]) -> str | None:
        """Why a webhook to `host:port`, resolved to `ips`, would reach foreman or its target."""
        if any(self._reaches_foreman(ip, port) for ip in ips):
            return "foreman's own address"
        if self._target is None or port != self._target[1]:
            return None
        target_host = self._target[0]
        if host.lower().rstrip(".") == target_host or set(ips) & await self._target_addresses(target_host, port):
            return "the target's address"
        return None

    def _reaches_foreman(self, ip: IPAddress, port: int) -> bool:
        for own_ip, own_port in self._own:
            if port != own_port:
                continue
            # Bound to 0.0.0.0 / ::, foreman is at every address of this machine; and a
            # connection to 0.0.0.0 lands on this machine, whatever foreman is bound to.
            if ip == own_ip or ip.is_unspecified or (own_ip.is_unspecified and _this_host(ip)):
                return True
        return False

    @staticmethod
    async def _target_addresses(host: str, port: int) -> set[IPAddress]:
        ip = address(host)
        if ip is not None:
            return {ip}
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return set()  # a target foreman cannot resolve is not reachable through it either
        return {ip for *_, sockaddr in infos if (ip := address(str(sockaddr[0]))) is not None}
