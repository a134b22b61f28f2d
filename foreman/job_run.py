"""One job's run, from the worker taking it to its end: `JobRun` owns it while it runs.

It moves the job through `loading` (the model made resident, when a load is due)
and `working` (the body forwarded as sent), hands each piece of the answer to the
waiting caller as it arrives, and records the result. What a failure does depends
on where it happened (docs/contract.md section 4): unreachable before acceptance
re-queues without using an attempt; a break after acceptance re-queues with
attempt + 1 and backoff; an error answered by the target fails the job with that
answer. Others touch a running job only through `cancel`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foreman.answer import outcome_of
from foreman.assemble import Outcome, artifact_refs, result_fields
from foreman.caller import Caller, CallerGone, CallerStalled
from foreman.clock import now
from foreman.config import Settings
from foreman.errors import StorageUnavailable
from foreman.job import LOAD_ENDPOINT, Job
from foreman.poller import Poller
from foreman.requests import keep_alive_value
from foreman.residency import Residency
from foreman.runner import options_of_body
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


@dataclass(frozen=True)
class RunContext:
    """What every run uses and no run changes, but the residency it keeps up to date."""

    settings: Settings
    target: TargetClient
    poller: Poller
    residency: Residency


def job_request(target: TargetClient, job: Job, caller: Caller | None) -> Exchange:
    """The job's own request to the target (not sent yet)."""
    return target.exchange("POST", job.endpoint, job.body, _headers(caller))


class JobRun:
    """The job the worker is running now. `unsaved`: the job is not in the database yet (an
    offer, docs/adr/0012), and its row is created with its first commit. `exchange`: its
    request, when the offer sent it already."""

    def __init__(
        self,
        ctx: RunContext,
        job: Job,
        flow: JobFlow,
        caller: Caller | None,
        *,
        unsaved: bool = False,
        exchange: Exchange | None = None,
        jumped: bool = False,
    ) -> None:
        self._ctx = ctx
        self.job = job
        self.flow = flow
        self.caller = caller
        self.started = now()
        self.chunks = 0
        self.exchange = exchange
        self.headers: list[tuple[str, str]] = []  # the target's, to relay
        self.cancel_reason: str | None = None
        self.timed_out = False  # stopped by max_job_time: failed, not cancelled
        self.jumped = jumped  # max_wait sent it ahead of the resident runner's jobs
        self.swap: tuple[str, str | None] | None = None  # (reason, the runner before) when it swapped
        self.load_duration: int | None = None  # ns, when it loaded
        self.loading_s = 0.0
        self.storage_fault: StorageUnavailable | None = None  # a commit failed: the worker settles it
        self._unsaved = job if unsaved else None

    @property
    def state(self) -> str:
        return self.flow.state

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.exchange is not None:
            self.exchange.abort()

    def time_out(self, limit: float) -> None:
        """`max_job_time` is up: stop the run (upstream closed); it ends `failed`."""
        if self.cancel_reason is None:
            self.timed_out = True
            self.cancel(f"stopped after {limit:g}s: the job ran longer than max_job_time")

    async def run_to_end(self) -> None:
        """Run the job to an end the database records; never raises but for a cancellation
        of the worker itself (the stop's grace ran out), after settling the job."""
        caller = self.caller
        try:
            await self._run_and_settle()
        except StorageUnavailable as exc:
            # Nothing more is asked of the target, and no attempt is used: the job did nothing
            # wrong. The worker pauses until the store writes again, then settles the job.
            self.storage_fault = exc
            if self.exchange is not None:
                self.exchange.abort()
            if caller is not None:
                caller.abandon(exc.message, status=503)
        finally:
            if self.exchange is not None:  # left open by a failure: close it, free its connection
                self.exchange.abort()
            if caller is not None and not caller.answered and self.flow.current is not State.QUEUED:
                # The job ended (or was ended by someone else) without an answer reaching its
                # caller: never leave a client waiting for ever.
                caller.abandon("the job ended without an answer; see GET /jobs/" + self.job.id, status=500)

    async def _run_and_settle(self) -> None:
        caller = self.caller
        try:
            await self._execute()
        except StorageUnavailable:
            raise
        except TargetUnreachable as exc:
            await self._target_unreachable(str(exc))
        except TargetBroken as exc:
            await self._target_broken(str(exc))
        except (TargetAborted, CallerGone):
            await self._cancelled()
        except TargetRefused as exc:
            await self._fail(exc.message, status=exc.status)
            if caller is not None:
                caller.reply(exc.status, exc.headers, exc.body)
        except asyncio.CancelledError:
            # Settle the job in a task of its own, which this cancellation cannot reach,
            # then go on stopping.
            await asyncio.shield(asyncio.ensure_future(self._interrupted()))
            raise
        except Exception as exc:
            log.exception("job=%s failed inside foreman", self.job.id)
            await self._fail(f"internal error: {exc}")
            if caller is not None:
                caller.abandon(f"foreman internal error: {exc}", status=500)

    async def _execute(self) -> None:
        job, residency = self.job, self._ctx.residency
        load_duration = None
        needs_load = residency.needs_load(job)
        self.swap = swap = residency.starting(job)
        steps: list[tuple[Trigger, Mapping[str, Any]]] = [
            (Trigger.LOAD, {"started_at": now(), "jumped": int(self.jumped)})
        ]
        if needs_load:
            # A model load happens between `loading` and `working`: they commit apart.
            assert self.exchange is None, "offer sends a request only when no load is due"
            if not await self._record(steps):
                raise TargetAborted(self.cancel_reason or "the job was moved on by someone else")
            steps = []
            started = now()
            load_duration = self.load_duration = await self._load()
            self.loading_s = now() - started
            self._check_cancelled()
        steps.append(
            (
                Trigger.WORK,
                {
                    "swapped": int(swap is not None),
                    "load_duration": load_duration,
                    "swap_reason": swap[0] if swap else None,
                    "swap_from": swap[1] if swap else None,
                    "working_at": now(),
                },
            )
        )
        # The request goes out first and `working` is committed while the target works on it;
        # no byte reaches the caller before that commit (docs/adr/0012).
        x = self.exchange
        if x is None:
            x = self.exchange = job_request(self._ctx.target, job, self.caller)
            if not x.send():
                await asyncio.sleep(0)  # let it start connecting before the commit takes the loop
        working = asyncio.ensure_future(self._record(steps))
        try:
            raw = await self._forward(x, working)
        finally:
            await asyncio.wait({working})
            if not working.cancelled() and working.exception() is not None:
                log.error("job=%s recording `working` failed: %r", job.id, working.exception())
        outcome = outcome_of(job.endpoint, raw)
        residency.answered(job)
        # Commit first, answer second: a client holding its answer finds the job finished.
        if outcome.error is not None:
            # A streaming caller already has the target's own error line.
            await self._fail(outcome.error, status=200)
        else:
            await self._finish(outcome)
        if self.caller is not None:
            self._answer(raw)

    async def _record(self, steps: list[tuple[Trigger, Mapping[str, Any]]]) -> bool:
        """Stage `steps` on the job's machine and commit them (with the job itself while it is
        unsaved) as one transaction (docs/adr/0012). False when the job had moved on (cancelled)."""
        batch: list[Change] = []
        for trigger, fields in steps:
            if not await self.flow.move(trigger, fields=fields, batch=batch):
                return False
        create, self._unsaved = self._unsaved, None
        return await self.flow.commit(batch, create)

    async def _load(self) -> int | None:
        """Make the job's model resident with a load-only request on the job's own endpoint."""
        job = self.job
        keep_alive = keep_alive_value(self._ctx.settings.worker_keep_alive)
        load: dict[str, Any] = {"model": job.model_name, "keep_alive": keep_alive}
        options = options_of_body(job.body)  # load the runner the job will run on (foreman/runner.py)
        if "shift" in options:
            load["shift"] = options.pop("shift")
        if options:
            load["options"] = options
        body = json.dumps(load).encode()
        started = time.perf_counter()
        path = LOAD_ENDPOINT[job.endpoint]
        # The load's body is JSON whatever the job's is (a transcription's is multipart).
        headers = {k: v for k, v in _headers(self.caller).items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json"
        x = self.exchange = self._ctx.target.exchange("POST", path, body, headers)
        async with x:
            self._check_cancelled()
            answer = await x.read()
            if x.status != 200:
                raise TargetRefused(x.status, x.headers, answer)
        self.exchange = None
        # Ollama's load reply carries no durations: the load is what this request waited for.
        try:
            reported = int(json.loads(answer).get("load_duration") or 0)
        except (ValueError, AttributeError, TypeError):
            reported = 0
        return reported or int((time.perf_counter() - started) * 1e9)

    async def _forward(self, x: Exchange, working: asyncio.Future[bool]) -> bytes:
        """Pass the answer to the job's sent request to the caller as it arrives."""
        caller = self.caller
        parts: list[bytes] = []
        async with x:
            if not await working:
                raise TargetAborted(self.cancel_reason or "the job was moved on by someone else")
            self._check_cancelled()
            if x.status != 200:
                raise TargetRefused(x.status, x.headers, await x.read())
            relay = caller is not None and self.job.stream
            if relay:
                assert caller is not None
                await caller.begin(x.status, x.headers)
            self.headers = x.headers
            async for data in x.chunks():
                parts.append(data)
                self.chunks += data.count(b"\n")
                if relay:
                    try:
                        await caller.send(data)  # type: ignore[union-attr]
                    except CallerStalled as exc:
                        self.cancel_reason = self.cancel_reason or str(exc)  # before any other await
                        raise
        self.exchange = None
        return b"".join(parts)

    def _answer(self, raw: bytes) -> None:
        caller = self.caller
        assert caller is not None
        if caller.started:
            caller.end()
        else:
            caller.reply(200, self.headers or _JSON_HEADERS, raw)

    # --- endings -----------------------------------------------------------------------------

    async def _finish(self, outcome: Outcome) -> None:
        job = self.job
        log.info(
            "job=%s done model=%s kind=%s attempt=%d chunks=%d eval_count=%s elapsed=%.3fs",
            job.id,
            job.model,
            job.kind,
            job.attempt,
            self.chunks,
            outcome.eval_count,
            now() - self.started,
        )
        inline_max = self._ctx.settings.inline_artifact_max
        refs = artifact_refs(job.id, outcome.artifacts, inline_max)
        response = next((a.data for a in outcome.artifacts if a.name == "response"), None)
        shown = (
            {"result": outcome.result}
            if response is not None and len(response) <= inline_max
            else result_fields(job.id, None, 0, inline_max)
        )
        await self.flow.move(
            Trigger.FINISH,
            fields={
                "finished_at": now(),
                "status": 200,
                "eval_count": outcome.eval_count,
                "eval_duration": _int_or_none((outcome.result or {}).get("eval_duration")),
            },
            extra={"artifacts": outcome.artifacts, "artifact_refs": refs, **shown},
        )

    async def _fail(self, message: str, status: int | None = None) -> None:
        log.warning("job=%s failed: %s", self.job.id, message)
        await self.flow.move(Trigger.FAIL, fields={"error": message, "status": status, "finished_at": now()})

    async def _cancelled(self) -> None:
        if self.timed_out:
            assert self.cancel_reason is not None
            await self._fail(self.cancel_reason)
            if self.caller is not None:
                self.caller.abandon(self.cancel_reason, status=504)
            return
        reason = self.cancel_reason or "the client disconnected"
        await self.flow.move(Trigger.CANCEL, fields={"error": reason, "finished_at": now()})
        if self.caller is not None:
            self.caller.abandon(f"job cancelled: {reason}")

    async def _interrupted(self) -> None:
        """foreman is stopping under a running job: an asynchronous one goes back to the queue
        (its attempt not counted: the job did nothing wrong), a synchronous one fails."""
        if self.exchange is not None:
            self.exchange.abort()
        if self.flow.current in TERMINAL:
            return
        if self.job.sync:
            await self._fail("interrupted: foreman stopped")
            if self.caller is not None:
                self.caller.abandon("foreman is shutting down", status=503)
        else:
            await self.flow.move(Trigger.REQUEUE)
            log.info("job=%s re-queued: foreman is stopping", self.job.id)

    async def _target_unreachable(self, reason: str) -> None:
        """Not accepted: back to the queue, no attempt used; wait for the target."""
        self._ctx.poller.report_down(reason)
        self._ctx.residency.lost()
        if self.caller is not None and self.caller.started:
            await self._broken_after_bytes(reason)
            return
        await self.flow.move(Trigger.REQUEUE)

    async def _target_broken(self, reason: str) -> None:
        """Broken after acceptance: attempt + 1 after backoff, or failed when used up."""
        log.warning("job=%s attempt %d broke: %s", self.job.id, self.job.attempt, reason)
        self._ctx.residency.lost()
        if self.caller is not None and self.caller.started:
            await self._broken_after_bytes(reason)
            return
        settings = self._ctx.settings
        attempt = self.job.attempt
        if attempt >= settings.max_attempts:
            message = f"gave up after {attempt} attempts: {reason}"
            await self._fail(message)
            if self.caller is not None:
                self.caller.abandon(message, status=502)
            return
        delay = min(settings.retry_backoff * 2 ** min(attempt - 1, 60), settings.retry_backoff_max)
        await self.flow.move(Trigger.REQUEUE, fields={"attempt": attempt + 1, "not_before": now() + delay})

    async def _broken_after_bytes(self, reason: str) -> None:
        """A stream the client has seen part of cannot be replayed: end it with an error line."""
        message = f"connection to the target broke mid-stream: {reason}"
        await self._fail(message)
        assert self.caller is not None
        self.caller.abandon(message)  # started: a last {"error": ...} line

    def _check_cancelled(self) -> None:
        if self.cancel_reason is not None:
            raise TargetAborted(self.cancel_reason)
        if self.caller is not None and self.caller.gone:
            raise CallerGone


def _headers(caller: Caller | None) -> dict[str, str]:
    """What goes upstream with a job's requests: its caller's headers, fit to forward."""
    return caller.upstream_headers if caller is not None else _JOB_HEADERS


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
