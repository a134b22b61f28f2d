"""What a job cost, as the job API and its events show it (docs/contract.md section 5,
docs/adr/0029): how long it queued, loaded and worked, whether it made the target swap
(and why), how many jobs of other runners the drain ran ahead of it, and its rate."""

from __future__ import annotations

from typing import Any, Protocol

from foreman.clock import now


class Costed(Protocol):
    """The columns accounting reads (a `Job`, or an event's `EventSource`)."""

    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def working_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def swap_reason(self) -> str | None: ...
    @property
    def swap_from(self) -> str | None: ...
    @property
    def load_duration(self) -> int | None: ...
    @property
    def ran_after(self) -> int: ...
    @property
    def jumped(self) -> bool | int: ...
    @property
    def eval_count(self) -> int | None: ...
    @property
    def eval_duration(self) -> int | None: ...


def timings(job: Costed, at: float | None = None) -> dict[str, float]:
    """Seconds queued, loading, working and in all; they add up to `total_s`. A job not
    finished yet is measured up to `at` (now)."""
    end = job.finished_at if job.finished_at is not None else (now() if at is None else at)
    started = job.started_at if job.started_at is not None else end
    working = job.working_at if job.working_at is not None else end
    working = max(working, started)
    return {
        "queued_s": round(max(0.0, started - job.created_at), 6),
        "loading_s": round(max(0.0, working - started), 6),
        "working_s": round(max(0.0, end - working), 6),
        "total_s": round(max(0.0, end - job.created_at), 6),
    }


def swap(job: Costed) -> dict[str, Any] | None:
    if job.swap_reason is None:
        return None
    load = job.load_duration
    return {"reason": job.swap_reason, "from": job.swap_from, "load_duration_s": (load or 0) / 1e9}


def tokens_per_s(job: Costed) -> float | None:
    """From the target's own durations: generated tokens over the time spent generating them."""
    if not job.eval_count or not job.eval_duration:
        return None
    return round(job.eval_count / (job.eval_duration / 1e9), 3)


def cost(job: Costed, at: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timings": timings(job, at),
        "swap": swap(job),
        "ran_after": job.ran_after,
        "jumped": bool(job.jumped),
    }
    if job.state == "done":
        out["eval_count"] = job.eval_count
        out["tokens_per_s"] = tokens_per_s(job)
    return out
