"""The client for webhook receivers: every webhook delivery foreman makes goes through here.

It owns the outbound policy of docs/contract.md section 5 (`webhook_policy.py`). Which addresses
a webhook may reach (`webhook_allow`) is checked when a job is submitted and again when
connecting, through a resolver that drops refused addresses, so a name that later resolves
elsewhere (DNS rebinding) is still refused. Two endpoints are refused whatever `webhook_allow`
says: foreman's own listen address and its target's, so a job's events never become requests
to foreman itself or to the Ollama behind it. Redirects are never followed, each attempt has a
timeout, and at most `max_response` bytes of an answer are read (`webhook_transport.py`, on
aiohttp, loaded at the first delivery). With a secret, every attempt is signed with the
Standard Webhooks headers plus `X-Foreman-Signature`.

One call to `deliver` is one attempt; retries and backoff belong to the delivery loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yarl import URL

from foreman import clock
from foreman.signing import signature_headers, signed_headers, signing_key
from foreman.webhook_policy import IPAddress, Policy, Reserved, address, port_of

if TYPE_CHECKING:
    from foreman.webhook_transport import Transport

log = logging.getLogger(__name__)


class WebhookRefused(Exception):
    """A webhook URL foreman will not call; str(exc) is a clear reason for a 400 reply."""


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
        self._policy = Policy(allow)
        self._reserved = Reserved(own, target_url)
        # Derived once: a malformed whsec_ secret fails at startup, not at the first delivery.
        self._key = signing_key(secret) if secret else None
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response = max_response
        self._transport: Transport | None = None
        self._closed = False

    async def check_url(self, url: str) -> None:
        """Refuse a URL foreman will not call (HTTP 400 at submit). Resolves the host without blocking."""
        parsed, host = self._static_check(url)
        port = port_of(parsed.scheme, parsed.port)
        literal = address(host)
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
            ip = address(str(sockaddr[0]))
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
        ip = address(host)
        if ip is not None and (why := self._policy.refusal(ip)):
            raise WebhookRefused(f"webhook address {host} is {why}")
        return parsed, host

    async def deliver(self, url: str, event_id: str, body: bytes) -> DeliveryResult:
        """One attempt. Network and receiver problems come back in the result, never as exceptions."""
        shown = safe_url(url)
        try:
            parsed, host = self._static_check(url)
            literal = address(host)  # aiohttp connects to a literal without asking the resolver
            if literal is not None:
                await self._check_reserved(host, port_of(parsed.scheme, parsed.port), [literal])
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

        if self._transport is None:
            from foreman.webhook_transport import Transport  # aiohttp loads at the first delivery

            self._transport = Transport(
                self._policy,
                self._reserved,
                connect_timeout=self._connect_timeout,
                total_timeout=self._total_timeout,
                max_response=self._max_response,
            )
        status, error = await self._transport.post(url, shown, body, headers)
        if status is None:
            return self._done(event_id, shown, DeliveryResult(None, error))
        if 200 <= status < 300:
            return self._done(event_id, shown, DeliveryResult(status, None))
        return self._done(event_id, shown, DeliveryResult(status, f"status {status}"))

    def _done(self, event_id: str, shown: str, result: DeliveryResult) -> DeliveryResult:
        log.debug("event=%s url=%s status=%s error=%s", event_id, shown, result.status, result.error)
        return result

    async def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()


__all__ = [
    "DeliveryResult",
    "WebhookClient",
    "WebhookRefused",
    "safe_url",
    "signature_headers",
    "signing_key",
]
