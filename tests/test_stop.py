"""Stopping never hangs: a cancel that lands as a loop is woken still stops the loop."""

from __future__ import annotations

import asyncio

from foreman.clock import wait_event
from foreman.server import Daemon


async def test_wait_event_keeps_a_cancel_that_arrives_with_the_event() -> None:
    event = asyncio.Event()
    waiting = asyncio.ensure_future(wait_event(event, 30))
    await asyncio.sleep(0)  # now parked on the event
    event.set()
    waiting.cancel()  # in the same loop turn: asyncio.wait_for on 3.11 returns True here instead
    await asyncio.wait({waiting}, timeout=5)
    assert waiting.cancelled()


async def test_wait_event_times_out_and_sees_a_set_event() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_the_deliverer_stops_when_woken_as_it_is_stopped(foreman: Daemon) -> None:
    deliverer = foreman.deliverer
    await asyncio.sleep(0.05)  # its loop is parked, waiting for a wake-up (up to 30 s)
    deliverer.wake()  # a delivery ending just as the daemon stops
    async with asyncio.timeout(5):
        await deliverer.stop()
