"""Which worker model the target holds for us, as far as foreman can tell.

The worker drains the queue of the resident model before it pays a swap
(docs/adr/0002, 0008); the embedder's model is kept beside it and never counts
(docs/adr/0013). What foreman ran last is the best guess, corrected by the poller's
last look at `/api/ps` when that is newer.
"""

from __future__ import annotations

import logging

from foreman.clock import now
from foreman.job import KIND_GENERATE, KIND_UNLOAD, Job, model_key
from foreman.poller import Poller

log = logging.getLogger(__name__)


class Residency:
    def __init__(self, poller: Poller, embed_model: str | None) -> None:
        self._poller = poller
        self.model: str | None = None  # the worker model the target last ran for us
        self._since = 0.0  # when it last finished a job on it
        self.swaps = 0  # model loads the worker paid for, since start
        self.embed_key = model_key(embed_model) if embed_model else None

    def needs_load(self, job: Job) -> bool:
        """A generation on another model than the resident one: it is loaded first, in `loading`."""
        return job.kind == KIND_GENERATE and self.model != job.model

    def starting(self, job: Job) -> bool:
        """The worker takes `job`: True (and a swap counted) when it runs on another model."""
        swapped = job.kind != KIND_UNLOAD and self.model != job.model
        if swapped:
            self.swaps += 1
        return swapped

    def answered(self, job: Job) -> None:
        """The target answered `job` in full: its model is resident now (or, unloaded, not)."""
        if job.kind != KIND_UNLOAD:
            self.model = job.model
        elif self.model == job.model:
            self.model = None
        self._since = now()

    def lost(self) -> None:
        """The connection to the target failed: what it holds is unknown."""
        self.model = None

    def check(self) -> str | None:
        """The resident worker model, as far as the last look at /api/ps allows.

        If the target has dropped it since (evicted, expired, restarted), it is not resident;
        if nothing of ours is, a worker model someone else loaded counts (drain it first).
        """
        seen = self._poller.ps
        if seen is None or seen.at <= self._since:
            return self.model
        loaded = [key for key in (m.get("model") or m.get("name") for m in seen.data.get("models") or []) if key]
        keys = [model_key(str(key)) for key in loaded]
        if self.model is not None and self.model not in keys:
            log.info("model %s is no longer resident on the target", self.model)
            self.model = None
        if self.model is None:
            others = [key for key in keys if key != self.embed_key]
            if others:
                self.model = others[0]  # /api/ps lists the longest-lived first
        return self.model
