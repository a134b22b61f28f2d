"""The job lifecycle of docs/contract.md section 4, as an explicit `transitions` machine.

This package knows nothing of SQLite or HTTP: persistence comes in through the
`Sink` protocol, so the lifecycle can be tested alone. (The name clashes with the
PyPI package python-statemachine, which foreman never depends on.)
"""

from statemachine.machine import Change, JobFlow, Lifecycle, Sink
from statemachine.states import ACTIVE, TERMINAL, State
from statemachine.table import TRANSITIONS, Trigger

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "TRANSITIONS",
    "Change",
    "JobFlow",
    "Lifecycle",
    "Sink",
    "State",
    "Trigger",
]
