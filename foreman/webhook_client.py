"""The client for webhook receivers: every webhook delivery foreman makes goes through here.

It owns the outbound policy of docs/contract.md section 5. Which addresses a webhook may reach
(`webhook_allow`) is checked when a job is submitted and again when connecting, through a
resolver that drops refused addresses, so a name that later resolves elsewhere (DNS
rebinding) is still refused. Two endpoints are refused whatever `webhook_allow` says:
foreman's own listen address and its target's, so a job's events never become requests to
foreman itself or to the Ollama behind it. Redirects are never followed, each attempt has a
timeout, and at most `max_response` bytes of an answer are read. With a secret, every attempt is
signed with the Standard Webhooks headers plus `X-Foreman-Signature`.

One call to `deliver` is one attempt; retries and backoff belong to the delivery loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from foreman import clock
from foreman.browser import is_local_address
from foreman.signing import signature_headers, signed_headers, signing_key

log = logging.getLogger(__name__)

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


class WebhookRefused(Exception):
    """A webhook URL foreman will not call; str(exc) is a clear reason for a 400 reply."""


class AddressRefused(OSError):
    """Raised by the resolver at connect time: the host resolves only to refused addresses."""


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one delivery attempt."""

    status: int | None  # the receiver's HTTP status, None when no answer
    error: str | None  # why there was no 2xx; never holds the secret, a signature or a query string

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410: the receiver asks foreman to stop delivering to this URL."""
        return self.status == 410


def safe_url(url: str) -> str:
    """scheme://host:port/path: what logs may show (query strings and userinfo can hold tokens)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


def _address(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:169.254.169.254 reaches the IPv4 address: judge it as that.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _Policy:
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


def _port(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


def _this_host(ip: IPAddress) -> bool:
    """`ip` reaches this machine (0.0.0.0 does, on Linux and macOS)."""
    return ip.is_loopback or ip.is_unspecified or is_local_address(ip)


class _Reserved:
    """The endpoints no webhook may reach, `webhook_allow` or not: foreman's own listen addresses
    (as bound: an unspecified one is every address of this machine) and the target's."""

    def __init__(self, own: Sequence[tuple[str, int]], target_url: str | None) -> None:
        self._own = [(ip, port) for host, port in own if (ip := _address(host)) is not None]
        self._target: tuple[str, int] | None = None
        if target_url:
            parts = urlsplit(target_url)
            if parts.hostname:
                self._target = (parts.hostname.lower().rstrip("."), _port(parts.scheme, parts.port))

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
        ip = _address(host)
        if ip is not None:
            return {ip}
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return set()  # a target foreman cannot resolve is not reachable through it either
        return {ip for *_, sockaddr in infos if (ip := _address(str(sockaddr[0]))) is not None}


class _PolicyResolver(AbstractResolver):
    """Resolves for aiohttp at connect time and drops the addresses the policy refuses."""

    def __init__(self, policy: _Policy, reserved: _Reserved) -> None:
        self._policy = policy
        self._reserved = reserved
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        listed = self._policy.name_listed(host)
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in found:
            ip = _address(result["host"])
            why = "not an IP address" if ip is None else self._policy.refusal(ip, listed)
            if ip is not None and not why:
                why = await self._reserved.refusal(host, port, [ip])
            if why:
                refused.append(f"{result['host']} is {why}")
            else:
                kept.append(result)
        if not kept:
            raise AddressRefused(f"{host} resolves only to refused addresses ({'; '.join(refused)})")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class WebhookClient:
    """One connection pool for all webhook receivers. `close()` when done."""

    def __init__(
        self,
        *,
        allow: tuple[str, ...] | None,
        secret: str | None,
        own: Sequence[tuple[str, int]] = (),
        target_url: str | None = None,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        max_response: int = 65536,
    ) -> None:
        """`own`: the (address, port) pairs foreman listens on; `target_url`: its `ollama_url`."""
        self._policy = _Policy(allow)
        self._reserved = _Reserved(own, target_url)
        # Derived once: a malformed whsec_ secret fails at startup, not at the first delivery.
        self._key = signing_key(secret) if secret else None
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response = max_response
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def check_url(self, url: str) -> None:
        """Refuse a URL foreman will not call (HTTP 400 at submit). Resolves the host without blocking."""
        parsed, host = self._static_check(url)
        port = _port(parsed.scheme, parsed.port)
        literal = _address(host)
        if literal is not None:  # judged against webhook_allow by _static_check
            await self._check_reserved(host, port, [literal])
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise WebhookRefused(f"webhook host {host} does not resolve") from None
        if not infos:
            raise WebhookRefused(f"webhook host {host} does not resolve")
        listed = self._policy.name_listed(host)
        ips: list[IPAddress] = []
        for *_, sockaddr in infos:
            ip = _address(str(sockaddr[0]))
            why = "not an IP address" if ip is None else self._policy.refusal(ip, listed)
            if why:
                raise WebhookRefused(f"webhook host {host} resolves to {sockaddr[0]}, {why}")
            assert ip is not None
            ips.append(ip)
        await self._check_reserved(host, port, ips)

    async def _check_reserved(self, host: str, port: int, ips: Sequence[IPAddress]) -> None:
        why = await self._reserved.refusal(host, port, ips)
        if why:
            raise WebhookRefused(f"webhook address {host}:{port} is {why}")

    def _static_check(self, url: str) -> tuple[URL, str]:
        """What needs no DNS: scheme, host, and an IP-literal host (aiohttp never resolves those)."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise WebhookRefused("webhook URL is not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise WebhookRefused("webhook URL must be http or https")
        host = (parsed.raw_host or "").rstrip(".")
        if not host:
            raise WebhookRefused("webhook URL has no host")
        ip = _address(host)
        if ip is not None and (why := self._policy.refusal(ip)):
            raise WebhookRefused(f"webhook address {host} is {why}")
        return parsed, host

    async def deliver(self, url: str, event_id: str, body: bytes) -> DeliveryResult:
        """One attempt. Network and receiver problems come back in the result, never as exceptions."""
        shown = safe_url(url)
        try:
            parsed, host = self._static_check(url)
            literal = _address(host)  # aiohttp connects to a literal without asking the resolver
            if literal is not None:
                await self._check_reserved(host, _port(parsed.scheme, parsed.port), [literal])
        except WebhookRefused as exc:
            return self._done(event_id, shown, DeliveryResult(None, f"refused address: {exc}"))
        if self._closed:
            # A delivery racing shutdown: report it like any failed attempt; the outbox retries later.
            return self._done(event_id, shown, DeliveryResult(None, "webhook client closed"))

        timestamp = int(clock.now())  # fresh on every attempt; the id stays the event's
        headers = {"Content-Type": "application/json", "User-Agent": "foreman-webhooks"}
        if self._key is None:
            headers |= {"webhook-id": event_id, "webhook-timestamp": str(timestamp)}
        else:
            headers |= signed_headers(self._key, event_id, timestamp, body)

        status: int | None = None
        try:
            async with self._get_session().post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                await self._drain(response)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if status is None:
                return self._done(event_id, shown, DeliveryResult(None, self._describe(exc, url, shown)))
            # The receiver already answered; a body that stalls or breaks does not change that answer.
            log.debug("event=%s url=%s reading the answer failed: %s", event_id, shown, type(exc).__name__)
        if 200 <= status < 300:
            return self._done(event_id, shown, DeliveryResult(status, None))
        return self._done(event_id, shown, DeliveryResult(status, f"status {status}"))

    async def _drain(self, response: aiohttp.ClientResponse) -> None:
        """Read at most max_response bytes and drop them; past the cap, close the connection."""
        remaining = self._max_response
        while remaining > 0:
            chunk = await response.content.read(remaining)
            if not chunk:
                return  # read to the end: the connection can go back to the pool
            remaining -= len(chunk)
        if not response.content.at_eof():
            response.close()

    def _describe(self, exc: BaseException, url: str, shown: str) -> str:
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc.os_error, AddressRefused):
                return f"refused address: {exc.os_error}"
            reason = os.strerror(exc.errno) if exc.errno else exc.strerror or type(exc.os_error).__name__
            return f"cannot connect to {exc.host}:{exc.port}: {reason}"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"connect timed out after {self._connect_timeout:g}s"
        if isinstance(exc, TimeoutError):
            return f"timed out after {self._total_timeout:g}s"
        # Some aiohttp errors quote the URL; show it without its query string.
        detail = str(exc).replace(url, shown)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

    def _done(self, event_id: str, shown: str, result: DeliveryResult) -> DeliveryResult:
        log.debug("event=%s url=%s status=%s error=%s", event_id, shown, result.status, result.error)
        return result

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No DNS cache: every new connection resolves, and is checked, again.
                connector=aiohttp.TCPConnector(
                    resolver=_PolicyResolver(self._policy, self._reserved), use_dns_cache=False
                ),
                timeout=aiohttp.ClientTimeout(total=self._total_timeout, sock_connect=self._connect_timeout),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


__all__ = [
    "AddressRefused",
    "DeliveryResult",
    "WebhookClient",
    "WebhookRefused",
    "safe_url",
    "signature_headers",
    "signing_key",
]
