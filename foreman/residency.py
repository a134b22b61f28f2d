"""Which runner the target holds for us, as far as foreman can tell.

The worker drains the queue of the resident runner (the model and the runner options it
was loaded with, foreman/runner.py) before it pays a swap (docs/adr/0002, 0008, 0029); the
embedder's model is kept beside it and never counts (docs/adr/0013). What foreman ran last
is the best guess, corrected by the poller's last look at `/api/ps` when that is newer.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from foreman.clock import now
from foreman.job import KIND_GENERATE, KIND_UNLOAD, Job, model_key
from foreman.poller import Poller
from foreman.runner import options_of_body, runner_key

log = logging.getLogger(__name__)

SWAP_REASONS = ("model", "options", "evicted")


class Residency:
    def __init__(self, poller: Poller, embed_model: str | None) -> None:
        self._poller = poller
        self.runner: str | None = None  # the runner key the target last ran for us
        self.model: str | None = None  # its model
        self._options: dict[str, Any] = {}  # the runner options it was loaded with
        self._context: int | None = None  # /api/ps's context_length of that model, when seen
        self._evicted: str | None = None  # the runner the target dropped since we last ran it
        self._since = 0.0  # when it last finished a job on it
        self.swaps = 0  # loads the worker paid for, since start
        self.swaps_by_reason: Counter[str] = Counter()
        self.embed_key = model_key(embed_model) if embed_model else None

    def compatible(self) -> list[str]:
        """The runner keys that run on the resident runner without a reload: its own, and,
        when it was loaded without `num_ctx`, the same with `num_ctx` set to the context
        /api/ps reports (an explicit default is no change, as in Ollama)."""
        runner = self.runner
        if runner is None:
            return []
        keys = [runner]
        if self._context is not None and self.model is not None and "num_ctx" not in self._options:
            keys.append(runner_key(self.model, {**self._options, "num_ctx": self._context}))
        return keys

    def needs_load(self, job: Job) -> bool:
        """A generation on another runner than the resident one: it is loaded first, in `loading`."""
        return job.kind == KIND_GENERATE and job.runner not in self.compatible()

    def starting(self, job: Job) -> tuple[str, str | None] | None:
        """The worker takes `job`: the swap it costs, `(reason, the runner before)`, or None."""
        if job.kind == KIND_UNLOAD or job.runner in self.compatible():
            return None
        if self.runner is None:
            reason, before = ("evicted" if self._evicted == job.runner else "model"), None
        else:
            reason, before = ("model" if self.model != job.model else "options"), self.runner
        self.swaps += 1
        self.swaps_by_reason[reason] += 1
        return reason, before

    def answered(self, job: Job) -> None:
        """The target answered `job` in full: its runner is resident now (or, unloaded, not)."""
        if job.kind != KIND_UNLOAD:
            if job.runner not in self.compatible():
                self.runner, self._context = job.runner, None
                self._options = options_of_body(job.body)
            self.model = job.model
        elif self.model == job.model:
            self.runner = self.model = self._context = None
            self._options = {}
        self._evicted = None
        self._since = now()

    def lost(self) -> None:
        """The connection to the target failed: what it holds is unknown."""
        self.runner = self.model = self._context = None
        self._options = {}

    def check(self) -> str | None:
        """The resident runner, as far as the last look at /api/ps allows.

        If the target has dropped it since (evicted, expired, restarted), it is not resident;
        if nothing of ours is, a worker model someone else loaded counts (drain it first).
        """
        seen = self._poller.ps
        if seen is None or seen.at <= self._since:
            return self.runner
        loaded = {}
        for entry in seen.data.get("models") or []:
            name = entry.get("model") or entry.get("name")
            if name:
                loaded[model_key(str(name))] = entry.get("context_length")
        if self.model is not None and self.model not in loaded:
            log.info("runner %s is no longer resident on the target", self.runner)
            self._evicted = self.runner
            self.runner = self.model = self._context = None
            self._options = {}
        if self.model is None:
            others = [key for key in loaded if key != self.embed_key]
            if others:
                self.runner = self.model = others[0]  # /api/ps lists the longest-lived first
                self._options = {}
        if self.model is not None:
            context = loaded.get(self.model)
            self._context = context if isinstance(context, int) else None
        return self.runner
