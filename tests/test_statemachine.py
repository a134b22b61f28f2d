"""The lifecycle machine alone, with an in-memory sink."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import logging
from pathlib import Path

import pytest
from transitions.extensions.asyncio import AsyncMachine

import statemachine
from statemachine import TRANSITIONS, Change, Lifecycle, State, Trigger
from statemachine.table import mermaid

ROOT = Path(__file__).resolve().parent.parent


class MemorySink:
    def __init__(self, refuse: bool = False) -> None:
        self.persisted: list[Change] = []
        self.notified: list[Change] = []
        self.refuse = refuse

    async def persist(self, change: Change) -> bool:
        if self.refuse:
            return False
        self.persisted.append(change)
        return True

    def notify(self, change: Change) -> None:
        self.notified.append(change)


def test_the_package_is_ours_not_python_statemachine() -> None:
    assert Path(statemachine.__file__).resolve().parent == ROOT / "statemachine"


async def test_happy_path_persists_then_notifies_each_transition() -> None:
    sink = MemorySink()
    with Lifecycle(sink).flow("j1", State.QUEUED) as flow:
        for trigger in (Trigger.LOAD, Trigger.WORK, Trigger.FINISH):
            assert await flow.move(trigger, fields={"attempt": 1})
        assert flow.current is State.DONE
    assert [(c.source, c.dest) for c in sink.persisted] == [
        (State.QUEUED, State.LOADING),
        (State.LOADING, State.WORKING),
        (State.WORKING, State.DONE),
    ]
    assert sink.notified == sink.persisted
    assert sink.persisted[0].fields == {"attempt": 1}


async def test_illegal_transition_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    with Lifecycle(sink).flow("j2", State.QUEUED) as flow, caplog.at_level(logging.ERROR, logger="statemachine"):
        assert not await flow.move(Trigger.FINISH)
        assert flow.current is State.QUEUED
    assert sink.persisted == []
    assert "illegal transition refused" in caplog.text and "j2" in caplog.text


async def test_terminal_states_accept_nothing() -> None:
    lifecycle = Lifecycle(MemorySink())
    for state in (State.DONE, State.FAILED, State.CANCELLED):
        with lifecycle.flow("j", state) as flow:
            for trigger in Trigger:
                assert not await flow.move(trigger)
                assert flow.current is state


async def test_a_refused_persist_leaves_the_state_alone() -> None:
    sink = MemorySink(refuse=True)
    with Lifecycle(sink).flow("j3", State.QUEUED) as flow:
        assert not await flow.move(Trigger.CANCEL)
        assert flow.current is State.QUEUED
    assert sink.notified == []


async def test_cancellation_inside_a_trigger_is_not_swallowed() -> None:
    started = asyncio.Event()

    class SlowSink(MemorySink):
        async def persist(self, change: Change) -> bool:
            started.set()
            await asyncio.sleep(10)
            return True

    with Lifecycle(SlowSink()).flow("j4", State.QUEUED) as flow:
        task = asyncio.ensure_future(flow.move(Trigger.LOAD))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert flow.current is State.QUEUED


async def test_staged_transitions_wait_for_their_batch() -> None:
    sink = MemorySink()
    batch: list[Change] = []
    with Lifecycle(sink).flow("j5", State.QUEUED) as flow:
        assert await flow.move(Trigger.LOAD, batch=batch)
        assert await flow.move(Trigger.WORK, batch=batch)
        assert flow.current is State.WORKING
    assert sink.persisted == []  # the caller commits the batch itself
    assert [(c.source, c.dest) for c in batch] == [(State.QUEUED, State.LOADING), (State.LOADING, State.WORKING)]


async def test_many_jobs_share_one_machine_and_leave_only_a_few_spare_flows() -> None:
    lifecycle = Lifecycle(MemorySink())
    for i in range(100):
        with lifecycle.flow(f"j{i}", State.QUEUED) as flow:
            assert await flow.move(Trigger.LOAD)
    assert len(lifecycle._machine.models) == 1  # one at a time: one spare, reused
    held = [lifecycle.flow(f"k{i}", State.QUEUED) for i in range(50)]
    for flow_context in held:
        flow_context.__enter__()
    for flow_context in held:
        flow_context.__exit__(None, None, None)
    assert len(lifecycle._machine.models) == 8


async def test_a_reused_flow_is_the_new_job_in_its_own_state() -> None:
    sink = MemorySink()
    lifecycle = Lifecycle(sink)
    with lifecycle.flow("first", State.QUEUED) as flow:
        assert await flow.move(Trigger.LOAD)
    with lifecycle.flow("second", State.WORKING) as again:
        assert again is flow and again.current is State.WORKING
        assert not await again.move(Trigger.LOAD)  # illegal from working: refused
        assert await again.move(Trigger.FINISH)
    assert [(c.job_id, c.dest) for c in sink.notified] == [("first", State.LOADING), ("second", State.DONE)]


def test_table_matches_the_contract() -> None:
    edges = {(s, t.dest) for t in TRANSITIONS for s in t.sources}
    assert edges == {
        (State.QUEUED, State.LOADING),
        (State.LOADING, State.WORKING),
        (State.WORKING, State.DONE),
        (State.LOADING, State.QUEUED),
        (State.WORKING, State.QUEUED),
        *{(s, d) for s in (State.QUEUED, State.LOADING, State.WORKING) for d in (State.FAILED, State.CANCELLED)},
    }


def test_generated_diagram_in_docs_is_current() -> None:
    doc = (ROOT / "docs" / "lifecycle.md").read_text()
    assert mermaid() in doc, "regenerate docs/lifecycle.md: python -m statemachine"


# What `_SequentialMachine` overrides (and `callback`, which its `callbacks` calls), as read in
# transitions 0.9.3. A change here means: read the new source, check the overrides still mean
# the same, then update the pin in setup.py and these digests together.
_REVIEWED = {
    "await_all": ("(callables)", "0d5b479a49830296"),
    "callbacks": ("(self, funcs, event_data)", "facd0dc310e60317"),
    "process_context": ("(self, func, model)", "1738108bc37b4ea7"),
    "callback": ("(self, func, event_data)", "52cc531724dfd83c"),
}


def test_transitions_is_the_pinned_version() -> None:
    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert f'"transitions=={importlib.metadata.version("transitions")}"' in setup


@pytest.mark.parametrize("name", sorted(_REVIEWED))
def test_the_internals_sequential_machine_overrides_are_as_reviewed(name: str) -> None:
    stock = getattr(AsyncMachine, name)
    signature, digest = _REVIEWED[name]
    assert str(inspect.signature(stock)) == signature, f"AsyncMachine.{name} changed its signature"
    source = hashlib.sha256(inspect.getsource(stock).encode()).hexdigest()[:16]
    assert source == digest, f"AsyncMachine.{name} changed: review statemachine/machine.py _SequentialMachine"
