"""The webhook client's HTTP side, on aiohttp.

`WebhookClient` imports this at its first delivery, so a foreman whose jobs never name a
webhook never loads aiohttp (about 15 MiB of a resting process). Redirects are never followed,
each attempt has a timeout, at most `max_response` bytes of an answer are read, and every new
connection resolves its host again through the policy (`PolicyResolver`): no DNS cache.
"""

from __future__ import annotations

import logging
import os
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from foreman.webhook_policy import AddressRefused, Policy, Reserved, address

log = logging.getLogger(__name__)


class PolicyResolver(AbstractResolver):
    """Resolves for aiohttp at connect time and drops the addresses the policy refuses."""

    def __init__(self, policy: Policy, reserved: Reserved) -> None:
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
            ip = address(result["host"])
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


class Transport:
    """One aiohttp connection pool for all webhook receivers. `close()` when done."""

    def __init__(
        self, policy: Policy, reserved: Reserved, *, connect_timeout: float, total_timeout: float, max_response: int
    ) -> None:
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response = max_response
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=PolicyResolver(policy, reserved), use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout),
            auto_decompress=False,
        )

    async def post(self, url: str, shown: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """One POST: the receiver's status (None when it never answered) and, without an
        answer, why. `shown` is the URL as logs and errors may show it."""
        status: int | None = None
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                await self._drain(response)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if status is None:
                return None, self._describe(exc, url, shown)
            # The receiver already answered; a body that stalls or breaks does not change that answer.
            log.debug("url=%s reading the answer failed: %s", shown, type(exc).__name__)
        return status, None

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

    async def close(self) -> None:
        await self._session.close()
