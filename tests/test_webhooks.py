"""Signed, ordered, at-least-once webhooks from the outbox, against real local receivers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import time
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from foreman import webhooks
from foreman.server import Daemon
from foreman.signing import signature_headers, signing_key
from foreman.simulator import Simulator
from tests.conftest import Receiver, SpawnForeman, StartForeman, free_port, read_db, wait_healthy

HELLO = [{"role": "user", "content": "hello there"}]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STATES = ["queued", "loading", "working", "done"]


async def submit(http: aiohttp.ClientSession, url: str, hook: str, **extra: Any) -> str:
    body = {"model": "llama3.2", "messages": HELLO, "state_webhook_url": hook, **extra}
    async with http.post(url + "/jobs", json=body) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def settled(foreman: Daemon, job_id: str) -> list[dict[str, Any]]:
    """The job's outbox rows once each is delivered or given up (no event to wait on: look every 10 ms)."""
    for _ in range(500):
        events = await foreman.store.outbox.events(job_id)
        if events and all(e["delivered_at"] is not None or e["given_up_at"] is not None for e in events):
            return events
        await asyncio.sleep(0.01)
    raise AssertionError(f"the events of job {job_id} never settled")


def verify(delivery: dict[str, Any]) -> None:
    """Both signatures, as a receiver would check them."""
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    Webhook(SECRET).verify(delivery["body"], headers)
    expected = hmac.new(signing_key(SECRET), delivery["body"], hashlib.sha256).hexdigest()
    assert headers["x-foreman-signature"] == f"sha256={expected}"
    assert headers["webhook-id"] == delivery["json"]["event_id"]


async def test_a_receiver_sees_every_state_in_order_signed(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(webhook_secret=SECRET)
    job_id = await submit(http, foreman.url, receiver.url)
    await receiver.wait_for(lambda: len(receiver.accepted()) == 4)
    events = receiver.accepted()
    assert [e["state"] for e in events] == STATES
    assert [e["previous_state"] for e in events] == [None, *STATES[:-1]]
    assert all(e["job_id"] == job_id and e["model"] == "llama3.2:latest" and e["attempt"] == 1 for e in events)
    assert len({e["event_id"] for e in events}) == 4
    done = events[-1]
    assert done["result"]["message"]["content"] and {a["name"] for a in done["artifacts"]} >= {"completion"}
    for delivery in receiver.deliveries:
        verify(delivery)


async def test_failed_and_cancelled_events_carry_the_error(
    start_foreman: StartForeman, sim: Simulator, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    sim.token_delay = 0.05
    job_id = await submit(http, foreman.url, receiver.url, options={"num_predict": 200})
    await receiver.wait_for(lambda: any(e["state"] == "working" for e in receiver.accepted()))
    async with http.delete(f"{foreman.url}/jobs/{job_id}"):
        pass
    await receiver.wait_for(lambda: receiver.accepted()[-1]["state"] == "cancelled")
    assert receiver.accepted()[-1]["error"]


async def test_500_500_200_is_exactly_three_attempts(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(webhook_secret=SECRET, webhook_backoff="50ms")
    receiver.answers = [500, 500]
    job_id = await submit(http, foreman.url, receiver.url)
    await receiver.wait_for(lambda: len(receiver.accepted()) == 4)
    first = [d for d in receiver.deliveries if d["json"]["state"] == "queued"]
    assert [d["status"] for d in first] == [500, 500, 200]
    assert len({d["headers"]["webhook-id"] for d in first}) == 1  # the same event, retried
    for delivery in first:  # signed afresh for each attempt: timestamped at its own time, valid
        verify(delivery)
        assert abs(int(delivery["headers"]["webhook-timestamp"]) - delivery["at"]) < 2
    assert [e["state"] for e in receiver.accepted()] == STATES
    await settled(foreman, job_id)  # the receiver's 200 reaches the database a moment later
    rows = read_db(
        foreman.settings.db_path,
        "SELECT state, attempts, delivered_at IS NOT NULL FROM events WHERE job_id = ? ORDER BY seq",
        (job_id,),
    )
    assert rows == [("queued", 3, 1), ("loading", 1, 1), ("working", 1, 1), ("done", 1, 1)]


async def test_a_receiver_down_for_a_while_gets_everything_in_order(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    receiver = Receiver()  # not listening yet: connection refused
    foreman = await start_foreman(webhook_secret=SECRET, webhook_backoff="100ms", webhook_backoff_max="300ms")
    job_id = await submit(http, foreman.url, receiver.url)
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=10") as resp:
        assert (await resp.json())["state"] == "done"
    events = await foreman.store.outbox.events(job_id)
    assert events[0]["attempts"] >= 1 and events[0]["delivered_at"] is None
    await receiver.start()
    try:
        await receiver.wait_for(lambda: len(receiver.accepted()) == 4)
        assert [e["state"] for e in receiver.accepted()] == STATES
        for delivery in receiver.deliveries:
            verify(delivery)  # signed at the moment of each attempt, so valid on arrival
            stamp = int(delivery["headers"]["webhook-timestamp"])
            assert abs(stamp - delivery["at"]) < 5
    finally:
        await receiver.stop()


async def test_410_gone_stops_deliveries_to_that_url(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    receiver.answers = [410]
    job_id = await submit(http, foreman.url, receiver.url)
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=10") as resp:
        assert (await resp.json())["state"] == "done"
    events = await settled(foreman, job_id)
    assert all(e["given_up_at"] is not None and e["delivered_at"] is None for e in events)
    assert [d["status"] for d in receiver.deliveries] == [410]  # nothing sent after the 410


@pytest.mark.slow
async def test_kill_9_while_working_and_after_done_before_delivery(
    sim: Simulator, foreman_process: SpawnForeman, db_path: str, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"FOREMAN_WEBHOOK_SECRET": SECRET, "FOREMAN_WEBHOOK_BACKOFF": "100ms", "FOREMAN_WEBHOOK_BACKOFF_MAX": "200ms"}
    receiver = Receiver()
    await receiver.start()
    proc = foreman_process(sim.url, port, **env)
    await wait_healthy(http, url)
    sim.token_delay = 0.05
    working = await submit(http, url, receiver.url, options={"num_predict": 100})
    await receiver.wait_for(lambda: any(e["state"] == "working" for e in receiver.accepted()))
    proc.send_signal(signal.SIGKILL)  # 1: killed while the job is working
    proc.wait()
    sim.token_delay = 0.0
    await receiver.stop()  # 2: the receiver is down when the next job finishes
    proc = foreman_process(sim.url, port, **env)
    await wait_healthy(http, url)
    async with http.get(f"{url}/jobs/{working}?wait=20") as resp:
        job = await resp.json()
    assert job["state"] == "done" and job["attempt"] == 2  # re-queued after the restart, then finished
    second = await submit(http, url, receiver.url)
    async with http.get(f"{url}/jobs/{second}?wait=20") as resp:
        assert (await resp.json())["state"] == "done"
    proc.send_signal(signal.SIGKILL)  # done is committed, its delivery is not
    proc.wait()
    pending = read_db(db_path, "SELECT state FROM events WHERE job_id = ? AND delivered_at IS NULL", (second,))
    assert ("done",) in pending
    await receiver.start()
    try:
        foreman_process(sim.url, port, **env)
        await receiver.wait_for(
            lambda: any(e["job_id"] == second and e["state"] == "done" for e in receiver.accepted()), timeout=20
        )
        await receiver.wait_for(
            lambda: any(e["job_id"] == working and e["state"] == "done" for e in receiver.accepted()), timeout=20
        )
        for delivery in receiver.deliveries:
            verify(delivery)
        for job_id in (working, second):
            states = [e["state"] for e in receiver.accepted() if e["job_id"] == job_id]
            assert states[-1] == "done" and states[0] == "queued"
    finally:
        await receiver.stop()


# --- foreman.webhooks: what a receiver runs ---------------------------------------------------


async def test_verify_accepts_foremans_deliveries_and_refuses_tampering_wrong_secrets_and_old_ones(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(webhook_secret=SECRET)
    job_id = await submit(http, foreman.url, receiver.url)
    await receiver.wait_for(lambda: len(receiver.accepted()) == 4)
    for delivery in receiver.deliveries:
        event = webhooks.verify(delivery["body"], delivery["headers"], SECRET)  # headers in their own case
        assert event == delivery["json"] and event["job_id"] == job_id
    delivery = receiver.deliveries[0]
    body, headers = delivery["body"], delivery["headers"]
    refusals = {
        "tampered body": (body.replace(b'"queued"', b'"done"'), headers, SECRET),
        "wrong secret": (body, headers, "whsec_" + "A" * 32),
        "a plain wrong secret": (body, headers, "not-the-secret"),
        "no signature": (body, {k: v for k, v in headers.items() if k.lower() != "webhook-signature"}, SECRET),
        "no timestamp": (body, {k: v for k, v in headers.items() if k.lower() != "webhook-timestamp"}, SECRET),
    }
    for why, (b, h, secret) in refusals.items():
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(b, h, secret)
            raise AssertionError(f"accepted: {why}")
    # Signed by foreman's own code, but 10 minutes ago: a replay. Accepted only without a tolerance.
    old = signature_headers(SECRET, delivery["json"]["event_id"], int(time.time()) - 600, body)
    with pytest.raises(webhooks.InvalidSignature, match="more than 300s away from now"):
        webhooks.verify(body, old, SECRET)
    assert webhooks.verify(body, old, SECRET, tolerance=None)["event_id"] == delivery["json"]["event_id"]


def test_the_deduplicator_lets_each_event_through_once_and_stays_bounded() -> None:
    seen = webhooks.Deduplicator(size=3)
    assert [seen.is_new(i) for i in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert len(seen) == 3 and "b" not in seen and "a" in seen  # "b" was the oldest touched
    seen.forget("a")  # handling it failed: foreman's retry is handled
    assert seen.is_new("a")
    with pytest.raises(ValueError):
        webhooks.Deduplicator(size=0)
