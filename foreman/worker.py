"""The worker: one coroutine, one generation at a time, ever (docs/adr/0002).

It takes the next job (drain-by-model), moves it through `loading` (the model made
resident) and `working` (the body forwarded as sent), hands each piece of the
answer to the waiting caller as it arrives, and records the result. What a
failure does depends on where it happened (CONTRACT section 4): unreachable
before acceptance re-queues without using an attempt; a break after acceptance
re-queues with attempt + 1 and backoff; an error answered by the target fails
the job with that answer. The loop never dies: it logs, marks the job, continues.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from foreman.assemble import Outcome, artifact_refs, assemble
from foreman.clock import now, wait_event
from foreman.config import Settings
from foreman.jobs import KIND_GENERATE, KIND_UNLOAD, LOAD_ENDPOINT, Job, keep_alive_value, model_key
from foreman.poller import Poller
from foreman.service import Caller, CallerGone, JobService, Running
from foreman.target import Exchange, TargetAborted, TargetBroken, TargetClient, TargetUnreachable
from statemachine import TERMINAL, Change, JobFlow, State, Trigger

log = logging.getLogger(__name__)

_JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8")]
_JOB_HEADERS = {"Content-Type": "application/json"}  # upstream, for a job no client waits on


class TargetRefused(Exception):
    """The target answered with an error status; relayed as it came."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"target answered {status}")
        self.status, self.headers, self.body = status, headers, body

    @property
    def message(self) -> str:
        try:
            return str(json.loads(self.body).get("error") or self.body.decode())
        except (ValueError, AttributeError):
            return self.body.decode("utf-8", "replace") or f"status {self.status}"


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Until the first of `waits` completes; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Worker:
    def __init__(self, settings: Settings, service: JobService, target: TargetClient, poller: Poller) -> None:
        self.settings = settings
        self.service = service
        self.target = target
        self.poller = poller
        self.resident: str | None = None  # the worker model the target last ran for us
        self._resident_since = 0.0  # when it last finished a job on it
        self.swaps = 0  # model loads the worker paid for, since start
        self.embed_key = model_key(settings.embed_model) if settings.embed_model else None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting_on_empty_queue = False
        self._offered: Job | None = None
        self._offered_exchange: Exchange | None = None  # its request, already sent
        # Whether the queue may hold runnable jobs the worker has not looked at. Everything
        # that queues a job calls wake(), so an idle worker skips the database entirely.
        self._stale = True
        self._next_wakeup: float | None = None  # earliest not_before of a backed-off job
        service.attach_worker(self.wake, self.offer)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self, grace: float = 10.0) -> None:
        """Let the running job end within `grace` seconds, else cancel it (restart recovers it)."""
        self._stopping.set()
        self.wake()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            log.warning("worker did not stop within %gs; cancelling the running job", grace)
            self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed; continuing")
                await asyncio.sleep(1.0)

    async def run_once(self) -> bool:
        """Run the next runnable job, or wait until there may be one. True if a job ran."""
        if not self.poller.up:
            await _first(self.poller.wait_up(), self._stopping.wait())
            return False
        if self._stale:
            self._stale = False
            self._wake.clear()  # before looking, so a wake() during the look is not lost
            job = await self.service.store.next_queued(self._check_resident(), now())
            if job is not None:
                self._stale = True  # there may be more
                await self._run(job, new=False)
                return True
            self._next_wakeup = await self.service.store.next_wakeup()
        await self._idle()
        offered, self._offered = self._offered, None
        if offered is None:
            return False
        await self._run(offered, new=True, sent=self._take_offered_exchange())
        return True

    def _take_offered_exchange(self) -> Exchange | None:
        exchange, self._offered_exchange = self._offered_exchange, None
        return exchange

    def _check_resident(self) -> str | None:
        """The resident worker model, as far as the last look at /api/ps allows.

        If the target has dropped it since (evicted, expired, restarted), it is not resident;
        if nothing of ours is, a worker model someone else loaded counts (drain it first).
        """
        seen = self.poller.ps
        if seen is None or seen.at <= self._resident_since:
            return self.resident
        loaded = [key for key in (m.get("model") or m.get("name") for m in seen.data.get("models") or []) if key]
        keys = [model_key(str(key)) for key in loaded]
        if self.resident is not None and self.resident not in keys:
            log.info("model %s is no longer resident on the target", self.resident)
            self.resident = None
        if self.resident is None:
            others = [key for key in keys if key != self.embed_key]
            if others:
                self.resident = others[0]  # /api/ps lists the longest-lived first
        return self.resident

    def wake(self) -> None:
        """A job became queued (submitted, or re-queued)."""
        self._stale = True
        self._wake.set()

    def offer(self, job: Job) -> bool:
        """Take a new job at once if idle with nothing runnable queued (docs/adr/0012).

        True means the worker now owns it: it will create the job itself, in the same
        commit as its first transitions, while its request already travels to the target.
        """
        if not self._waiting_on_empty_queue or self._wake.is_set() or self._stale or not self.poller.up:
            return False
        self._offered = job
        if not self._needs_load(job):
            # The request leaves now, in the handler's turn of the loop, not the worker's next.
            self._offered_exchange = self._request(job, self.service.caller(job.id))
            self._offered_exchange.send()
        self._wake.set()
        return True

    async def _idle(self) -> None:
        timeout = None if self._next_wakeup is None else max(0.0, self._next_wakeup - now())
        self._waiting_on_empty_queue = True
        try:
            if not await wait_event(self._wake, timeout):
                self._stale = True  # a backed-off job is due
        finally:
            self._waiting_on_empty_queue = False
            self._wake.clear()  # consumed: _stale and _offered carry what it meant

    # --- one job -----------------------------------------------------------------------------

    async def _run(self, job: Job, new: bool, sent: Exchange | None = None) -> None:
        """Run one job; `new`: offered straight to the worker, not in the database yet, and
        `sent`, its request if `offer` sent it already."""
        with self.service.lifecycle.flow(job.id, State.QUEUED) as flow:
            await self._drive(job, flow, new, sent)

    async def _drive(self, job: Job, flow: JobFlow, new: bool, sent: Exchange | None) -> None:
        caller = self.service.caller(job.id)
        if job.sync and caller is None:
            if sent is not None:
                sent.abort()
            await flow.move(Trigger.FAIL, fields={"error": "interrupted: its caller is gone", "finished_at": now()})
            return
        run = Running(job=job, flow=flow, caller=caller, exchange=sent)
        self.service.running = run
        metrics = self.service.metrics
        metrics.queue_wait.observe(max(0.0, run.started - job.created_at))
        try:
            await self._execute(run, new)
        except TargetUnreachable as exc:
            await self._target_unreachable(run, str(exc))
        except TargetBroken as exc:
            await self._target_broken(run, str(exc))
        except (TargetAborted, CallerGone):
            await self._cancelled(run)
        except TargetRefused as exc:
            await self._fail(run, exc.message, status=exc.status)
            if caller is not None:
                caller.reply(exc.status, exc.headers, exc.body)
        except asyncio.CancelledError:
            # The stop's grace ran out: settle the job in a task of its own, which this
            # cancellation cannot reach, then go on stopping.
            await asyncio.shield(asyncio.ensure_future(self._interrupted(run)))
            raise
        except Exception as exc:
            log.exception("job=%s failed inside foreman", job.id)
            await self._fail(run, f"internal error: {exc}")
            if caller is not None:
                caller.abandon(f"foreman internal error: {exc}", status=500)
        finally:
            self.service.running = None
            if run.exchange is not None:  # left open by a failure: close it, free its connection
                run.exchange.abort()
            if caller is not None and not caller.answered and flow.current is not State.QUEUED:
                # The job ended (or was ended by someone else) without an answer reaching its
                # caller: never leave a client waiting for ever.
                caller.abandon("the job ended without an answer; see GET /jobs/" + job.id, status=500)
            if flow.current in TERMINAL or (caller is not None and caller.answered):
                self.service.detach(job.id)
                metrics.job_duration.labels(job.endpoint, flow.state).observe(now() - run.started)

    async def _execute(self, run: Running, new: bool) -> None:
        job = run.job
        load_duration = None
        swapped = job.kind != KIND_UNLOAD and self.resident != job.model
        steps: list[tuple[Trigger, Mapping[str, Any]]] = [(Trigger.LOAD, {"started_at": now()})]
        if swapped:
            self.swaps += 1
        if self._needs_load(job):
            # A model load happens between `loading` and `working`: they commit apart.
            assert run.exchange is None, "offer sends a request only when no load is due"
            if not await self._record(run, job if new else None, steps):
                raise TargetAborted(run.cancel_reason or "the job was moved on by someone else")
            new, steps = False, []
            load_duration = await self._load(run)
            self._check_cancelled(run)
        steps.append((Trigger.WORK, {"swapped": int(swapped), "load_duration": load_duration}))
        # The request goes out first and `working` is committed while the target works on it;
        # no byte reaches the caller before that commit (docs/adr/0012).
        x = run.exchange
        if x is None:
            x = run.exchange = self._request(job, run.caller)
            if not x.send():
                await asyncio.sleep(0)  # let it start connecting before the commit takes the loop
        working = asyncio.ensure_future(self._record(run, job if new else None, steps))
        try:
            raw = await self._forward(run, x, working)
        finally:
            await asyncio.wait({working})
            if not working.cancelled() and working.exception() is not None:
                log.error("job=%s recording `working` failed: %r", job.id, working.exception())
        outcome = assemble(job.endpoint, raw)
        if job.kind != KIND_UNLOAD:
            self.resident = job.model
        elif self.resident == job.model:
            self.resident = None
        self._resident_since = now()
        # Commit first, answer second: a client holding its answer finds the job finished.
        if outcome.error is not None:
            # A streaming caller already has the target's own error line.
            await self._fail(run, outcome.error, status=200)
        else:
            await self._finish(run, outcome)
        if run.caller is not None:
            self._answer(run, 200, raw)

    async def _record(self, run: Running, new: Job | None, steps: list[tuple[Trigger, Mapping[str, Any]]]) -> bool:
        """Stage `steps` on the job's machine and commit them (with the job itself when `new`)
        as one transaction (docs/adr/0012). False when the job had moved on (cancelled)."""
        batch: list[Change] = []
        for trigger, fields in steps:
            if not await run.flow.move(trigger, fields=fields, batch=batch):
                return False
        return await self.service.commit(new, batch)

    async def _load(self, run: Running) -> int | None:
        """Make the job's model resident with a load-only request on the job's own endpoint."""
        job = run.job
        keep_alive = keep_alive_value(self.settings.worker_keep_alive)
        body = json.dumps({"model": job.model_name, "keep_alive": keep_alive}).encode()
        started = time.perf_counter()
        x = run.exchange = self.target.exchange("POST", LOAD_ENDPOINT[job.endpoint], body, _headers(run.caller))
        async with x:
            self._check_cancelled(run)
            answer = await x.read()
            if x.status != 200:
                raise TargetRefused(x.status, x.headers, answer)
        run.exchange = None
        # Ollama's load reply carries no durations: the load is what this request waited for.
        try:
            reported = int(json.loads(answer).get("load_duration") or 0)
        except (ValueError, AttributeError, TypeError):
            reported = 0
        return reported or int((time.perf_counter() - started) * 1e9)

    async def _forward(self, run: Running, x: Exchange, working: asyncio.Future[bool]) -> bytes:
        """Pass the answer to the job's sent request to the caller as it arrives."""
        job, caller = run.job, run.caller
        parts: list[bytes] = []
        async with x:
            if not await working:
                raise TargetAborted(run.cancel_reason or "the job was moved on by someone else")
            self._check_cancelled(run)
            if x.status != 200:
                raise TargetRefused(x.status, x.headers, await x.read())
            relay = caller is not None and job.stream
            if relay:
                assert caller is not None
                await caller.begin(x.status, x.headers)
            run.headers = x.headers
            async for data in x.chunks():
                parts.append(data)
                run.chunks += data.count(b"\n")
                if relay:
                    await caller.send(data)  # type: ignore[union-attr]
        run.exchange = None
        return b"".join(parts)

    def _answer(self, run: Running, status: int, raw: bytes) -> None:
        caller = run.caller
        assert caller is not None
        if caller.started:
            caller.end()
        else:
            caller.reply(status, run.headers or _JSON_HEADERS, raw)

    # --- endings -----------------------------------------------------------------------------

    async def _finish(self, run: Running, outcome: Outcome) -> None:
        job = run.job
        log.info(
            "job=%s done model=%s kind=%s attempt=%d chunks=%d eval_count=%s elapsed=%.3fs",
            job.id,
            job.model,
            job.kind,
            job.attempt,
            run.chunks,
            outcome.eval_count,
            now() - run.started,
        )
        refs = artifact_refs(run.job.id, outcome.artifacts, self.settings.inline_artifact_max)
        await run.flow.move(
            Trigger.FINISH,
            fields={"finished_at": now(), "status": 200, "eval_count": outcome.eval_count},
            extra={"artifacts": outcome.artifacts, "result": outcome.result, "artifact_refs": refs},
        )

    async def _fail(self, run: Running, message: str, status: int | None = None) -> None:
        log.warning("job=%s failed: %s", run.job.id, message)
        await run.flow.move(Trigger.FAIL, fields={"error": message, "status": status, "finished_at": now()})

    async def _cancelled(self, run: Running) -> None:
        reason = run.cancel_reason or "the client disconnected"
        await run.flow.move(Trigger.CANCEL, fields={"error": reason, "finished_at": now()})
        if run.caller is not None:
            run.caller.abandon(f"job cancelled: {reason}")

    async def _interrupted(self, run: Running) -> None:
        """foreman is stopping under a running job: an asynchronous one goes back to the queue
        (its attempt not counted: the job did nothing wrong), a synchronous one fails."""
        if run.exchange is not None:
            run.exchange.abort()
        if run.flow.current in TERMINAL:
            return
        if run.job.sync:
            await self._fail(run, "interrupted: foreman stopped")
            if run.caller is not None:
                run.caller.abandon("foreman is shutting down", status=503)
        else:
            await run.flow.move(Trigger.REQUEUE)
            log.info("job=%s re-queued: foreman is stopping", run.job.id)

    async def _target_unreachable(self, run: Running, reason: str) -> None:
        """Not accepted: back to the queue, no attempt used; wait for the target."""
        self.poller.report_down(reason)
        self.resident = None
        if run.caller is not None and run.caller.started:
            await self._broken_after_bytes(run, reason)
            return
        await run.flow.move(Trigger.REQUEUE)

    async def _target_broken(self, run: Running, reason: str) -> None:
        """Broken after acceptance: attempt + 1 after backoff, or failed when used up."""
        log.warning("job=%s attempt %d broke: %s", run.job.id, run.job.attempt, reason)
        self.resident = None
        if run.caller is not None and run.caller.started:
            await self._broken_after_bytes(run, reason)
            return
        attempt = run.job.attempt
        if attempt >= self.settings.max_attempts:
            message = f"gave up after {attempt} attempts: {reason}"
            await self._fail(run, message)
            if run.caller is not None:
                run.caller.abandon(message, status=502)
            return
        delay = min(self.settings.retry_backoff * 2 ** (attempt - 1), self.settings.retry_backoff_max)
        await run.flow.move(Trigger.REQUEUE, fields={"attempt": attempt + 1, "not_before": now() + delay})

    async def _broken_after_bytes(self, run: Running, reason: str) -> None:
        """A stream the client has seen part of cannot be replayed: end it with an error line."""
        message = f"connection to the target broke mid-stream: {reason}"
        await self._fail(run, message)
        assert run.caller is not None
        run.caller.abandon(message)  # started: a last {"error": ...} line

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _check_cancelled(run: Running) -> None:
        if run.cancel_reason is not None:
            raise TargetAborted(run.cancel_reason)
        if run.caller is not None and run.caller.gone:
            raise CallerGone

    def _needs_load(self, job: Job) -> bool:
        """A generation on another model than the resident one: it is loaded first, in `loading`."""
        return job.kind == KIND_GENERATE and self.resident != job.model

    def _request(self, job: Job, caller: Caller | None) -> Exchange:
        """The job's own request to the target (not sent yet)."""
        return self.target.exchange("POST", job.endpoint, job.body, _headers(caller))


def _headers(caller: Caller | None) -> dict[str, str]:
    """What goes upstream with a job's requests: its caller's headers, fit to forward."""
    return caller.upstream_headers if caller is not None else _JOB_HEADERS
