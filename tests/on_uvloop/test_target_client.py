"""tests/test_target_client.py's cases again, each on a uvloop event loop (see conftest.py)."""

from __future__ import annotations

import asyncio

import uvloop

from tests.test_target_client import *  # noqa: F403  (every case and its fixture, collected here again)


async def test_these_cases_run_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
