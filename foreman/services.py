"""The dependencies handlers receive through `initialize` (no module singletons)."""

from __future__ import annotations

from dataclasses import dataclass

from foreman.config import Settings
from foreman.delivery import Deliverer
from foreman.embedder import Embedder
from foreman.metrics import Metrics
from foreman.poller import Poller
from foreman.service import JobService
from foreman.store import Store
from foreman.sweeper import Sweeper
from foreman.target import TargetClient
from foreman.webhook_client import WebhookClient
from foreman.worker import Worker


@dataclass
class Services:
    settings: Settings
    store: Store
    jobs: JobService
    target: TargetClient  # the worker's and the face's pool
    embed_target: TargetClient  # the embeddings' own pool: never behind a generation
    poller: Poller
    embedder: Embedder
    worker: Worker
    webhooks: WebhookClient
    deliverer: Deliverer
    sweeper: Sweeper
    metrics: Metrics
    started_at: float
