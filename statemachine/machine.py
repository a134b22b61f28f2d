"""JobFlow: one job's lifecycle, driven by a `transitions` AsyncMachine.

The persist step is each transition's *condition* (docs/adr/0007): the machine
moves only when the sink has committed the change, with its outbox event, in one
transaction that is a compare-and-swap on the job's state. A refused CAS (the job
moved meanwhile) makes the trigger return False; an illegal trigger is logged and
refused; neither raises into the caller.

A caller may instead *stage* transitions into a batch and commit it with
`JobFlow.commit`, all or nothing, in one transaction (the worker does, so that
`loading` and `working` cost one commit; docs/adr/0012). Until that commit the
machine is ahead of the database, and a failed commit means the caller abandons
this JobFlow. Either way the sink hears of a change (`notify`) from the JobFlow,
once it is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from transitions import EventData, MachineError
from transitions.extensions.asyncio import AsyncEventData, AsyncMachine

from statemachine.states import State
from statemachine.table import TRANSITIONS, Trigger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One transition to persist: the CAS (`source` -> `dest`) plus what it records."""

    job_id: str
    trigger: Trigger
    source: State
    dest: State
    fields: Mapping[str, Any] = field(default_factory=dict)  # job columns to set
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. artifacts, result


class Sink(Protocol):
    """Where transitions go: persistence first, then notification."""

    async def persist(self, change: Change) -> bool:
        """Commit the change and its outbox event atomically; False if the CAS missed."""
        ...

    async def persist_batch(self, create: Any, changes: list[Change]) -> bool:
        """Commit staged changes in one transaction, all or nothing; False if a CAS missed.

        `create`: a job not stored yet, inserted as the changes leave it (or None)."""
        ...

    def notify(self, change: Change) -> None:
        """Called after a committed transition (wake waiters, update metrics)."""
        ...


def _machine_transitions() -> list[dict[str, Any]]:
    return [
        {
            "trigger": t.trigger.value,
            "source": [s.value for s in t.sources],
            "dest": t.dest.value,
            "conditions": "_persist",
        }
        for t in TRANSITIONS
    ]


_STATES = [s.value for s in State]
_TABLE = _machine_transitions()


class _SequentialMachine(AsyncMachine):
    """AsyncMachine awaiting its callbacks one by one, in this task.

    The stock `await_all` gathers them into concurrent tasks: each hook has one
    callback here, so that bought nothing but a task per callback (~40 µs a move);
    `callbacks` skips building a list of partials per hook (~8 µs a move), and
    `process_context` the bookkeeping for cancelling other tasks' triggers (~5 µs).
    These are internals: setup.py pins transitions to the release they were read in, and
    tests/test_statemachine.py fails if the stock methods change under an upgrade.
    """

    @staticmethod
    async def await_all(callables: list[Callable[..., Coroutine[Any, Any, bool | None]]]) -> list[bool | None]:
        return [await func() for func in callables]

    async def callbacks(self, funcs: Iterable[Any], event_data: AsyncEventData) -> None:  # type: ignore[override]
        # The stock one builds a list of partials for every hook, most of them empty here.
        for func in funcs:
            await self.callback(func, event_data)

    async def process_context(self, func: Callable[[], Awaitable[None]], model: object) -> bool:
        # The stock one files each trigger's task per model, to cancel it when another task
        # moves the same model; each JobFlow has one driver, in its own task, so nothing is
        # ever cancelled that way. It also turns a cancellation into False: here it propagates.
        return bool(await cast(Callable[[], Awaitable[bool]], func)())


_SPARE_FLOWS = 8  # JobFlows kept joined to the machine for reuse, beyond those in use


class Lifecycle:
    """The one machine all jobs share; a JobFlow joins it while an actor drives that job.

    Building a machine per job cost ~85 µs; joining a shared one ~30 µs, and reusing a joined
    one after its job is let go ~2 µs (docs/adr/0007). Actors rarely hold more than a few at once.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._machine = _SequentialMachine(
            model=None,
            states=_STATES,
            transitions=_TABLE,
            initial=State.QUEUED.value,
            auto_transitions=False,
            send_event=True,
            after_state_change="_notify",
        )
        self._spare: list[JobFlow] = []

    @contextmanager
    def flow(self, job_id: str, state: State | str) -> Iterator[JobFlow]:
        """`with lifecycle.flow(job_id, state) as flow:` the job's machine, left on exit."""
        if self._spare:
            flow = self._spare.pop()
            flow.job_id = job_id
            self._machine.set_state(State(state).value, model=flow)
        else:
            flow = JobFlow(job_id, self.sink)
            self._machine.add_model(flow, initial=State(state).value)
        try:
            yield flow
        finally:
            flow._pending = None
            if len(self._spare) < _SPARE_FLOWS:
                self._spare.append(flow)
            else:
                self._machine.remove_model(flow)


class JobFlow:
    """One job as the shared machine's model. Made by `Lifecycle.flow`, never directly."""

    state: str  # set by the machine

    def __init__(self, job_id: str, sink: Sink) -> None:
        self.job_id = job_id
        self._sink = sink
        self._pending: Change | None = None

    @property
    def current(self) -> State:
        return State(self.state)

    async def move(
        self,
        trigger: Trigger,
        fields: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        batch: list[Change] | None = None,
    ) -> bool:
        """Fire `trigger`; True when the transition was persisted (or staged in `batch`) and taken."""
        try:
            moved = await self.trigger(trigger.value, fields=fields or {}, extra=extra or {}, batch=batch)  # type: ignore[attr-defined]
        except MachineError as exc:
            log.error(
                "job=%s illegal transition refused trigger=%s state=%s: %s",
                self.job_id,
                trigger.value,
                self.state,
                exc.value,
            )
            return False
        return bool(moved)

    async def commit(self, batch: list[Change], create: Any = None) -> bool:
        """Commit the transitions staged in `batch` (and `create`, a job not stored yet), then
        tell the sink of each. False when the commit missed: abandon this JobFlow."""
        if not await self._sink.persist_batch(create, batch):
            return False
        for change in batch:  # staged transitions are told only once they are on disk
            self._sink.notify(change)
        return True

    async def _persist(self, event: EventData) -> bool:
        transition = event.transition
        assert transition is not None and transition.dest is not None
        change = Change(
            job_id=self.job_id,
            trigger=Trigger(event.event.name),
            source=State(transition.source),
            dest=State(transition.dest),
            fields=event.kwargs.get("fields", {}),
            extra=event.kwargs.get("extra", {}),
        )
        batch = event.kwargs.get("batch")
        if batch is not None:
            batch.append(change)  # persisted, then told to the sink, by `commit`
            return True
        if not await self._sink.persist(change):
            log.info(
                "job=%s transition skipped: no longer %s (trigger=%s)",
                self.job_id,
                change.source.value,
                change.trigger.value,
            )
            return False
        self._pending = change
        return True

    def _notify(self, event: EventData) -> None:
        change, self._pending = self._pending, None
        if change is not None:
            self._sink.notify(change)
