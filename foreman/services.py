"""The dependencies handlers receive through `initialize` (no module singletons)."""

from __future__ import annotations

from dataclasses import dataclass

from foreman.config import Settings
from foreman.poller import Poller
from foreman.service import JobService
from foreman.store import Store
from foreman.target import TargetClient


@dataclass
class Services:
    settings: Settings
    store: Store
    jobs: JobService
    target: TargetClient
    poller: Poller
    started_at: float
