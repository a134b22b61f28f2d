"""The lifecycle machine alone, with an in-memory sink."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import statemachine
from statemachine import TRANSITIONS, Change, JobFlow, State, Trigger
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
    flow = JobFlow("j1", State.QUEUED, sink)
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
    flow = JobFlow("j2", State.QUEUED, sink)
    with caplog.at_level(logging.ERROR, logger="statemachine"):
        assert not await flow.move(Trigger.FINISH)
    assert flow.current is State.QUEUED
    assert sink.persisted == []
    assert "illegal transition refused" in caplog.text and "j2" in caplog.text


async def test_terminal_states_accept_nothing() -> None:
    for state in (State.DONE, State.FAILED, State.CANCELLED):
        flow = JobFlow("j", state, MemorySink())
        for trigger in Trigger:
            assert not await flow.move(trigger)
            assert flow.current is state


async def test_a_refused_persist_leaves_the_state_alone() -> None:
    sink = MemorySink(refuse=True)
    flow = JobFlow("j3", State.QUEUED, sink)
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

    flow = JobFlow("j4", State.QUEUED, SlowSink())
    task = asyncio.ensure_future(flow.move(Trigger.LOAD))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flow.current is State.QUEUED


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
