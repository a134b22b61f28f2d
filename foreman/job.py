"""What a job is: the record read from the store, the submission it is made from, the
endpoints a job may run on, and Ollama's model-name key (parsing is `foreman/requests.py`)."""

from __future__ import annotations

from dataclasses import dataclass

CHAT = "/api/chat"
GENERATE = "/api/generate"
V1_CHAT = "/v1/chat/completions"
V1_COMPLETIONS = "/v1/completions"
V1_MESSAGES = "/v1/messages"  # Anthropic Messages
V1_RESPONSES = "/v1/responses"  # OpenAI Responses
V1_TRANSCRIPTIONS = "/v1/audio/transcriptions"  # multipart, runs a model through the chat path
# The native endpoint that loads a model for each endpoint a job may use.
LOAD_ENDPOINT = {
    CHAT: CHAT,
    GENERATE: GENERATE,
    V1_CHAT: CHAT,
    V1_COMPLETIONS: GENERATE,
    V1_MESSAGES: CHAT,
    V1_RESPONSES: CHAT,
    V1_TRANSCRIPTIONS: CHAT,
}
# What `POST /jobs` may name as its `endpoint`: every queued one with a JSON body.
JOB_API_ENDPOINTS = (CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS, V1_MESSAGES, V1_RESPONSES)

KIND_GENERATE = "generate"
KIND_LOAD = "load"
KIND_UNLOAD = "unload"


@dataclass(frozen=True)
class Submission:
    """A request to run, validated and ready to be stored as a queued job."""

    endpoint: str
    model: str  # canonical key, see model_key()
    name: str  # the model as the client spelled it (for Ollama's error texts)
    kind: str
    stream: bool
    body: bytes
    sync: bool = True
    webhook_url: str | None = None
    idempotency_key: str | None = None
    runner: str = ""  # the runner key (foreman/runner.py); empty: the model alone
    body_sha256: str | None = None  # of the request as sent, kept with an idempotency key


@dataclass(frozen=True)
class Job:
    """A job as stored. Built by the store from a row; never mutated."""

    seq: int
    id: str
    state: str
    model: str
    model_name: str
    endpoint: str
    kind: str
    sync: bool
    stream: bool
    body: bytes
    webhook_url: str | None
    idempotency_key: str | None
    attempt: int
    not_before: float
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    status: int | None
    error: str | None
    swapped: bool | None
    load_duration: int | None
    eval_count: int | None
    runner: str  # what the worker drains by: the model and its runner options (foreman/runner.py)
    working_at: float | None
    swap_reason: str | None  # model | options | evicted, when running it made the target load
    swap_from: str | None  # the runner before the swap, if any
    ran_after: int  # jobs of other runners the drain ran ahead of this one while it waited
    jumped: bool  # max_wait sent it ahead of the resident runner's jobs
    eval_duration: int | None  # the target's own, in ns
    body_sha256: str | None


def new_job(sub: Submission, job_id: str, ts: float) -> Job:
    """The queued job a submission becomes (before the store assigns its `seq`)."""
    return Job(
        seq=0,
        id=job_id,
        state="queued",
        model=sub.model,
        model_name=sub.name,
        endpoint=sub.endpoint,
        kind=sub.kind,
        sync=sub.sync,
        stream=sub.stream,
        body=sub.body,
        webhook_url=sub.webhook_url,
        idempotency_key=sub.idempotency_key,
        attempt=1,
        not_before=0.0,
        created_at=ts,
        updated_at=ts,
        started_at=None,
        finished_at=None,
        status=None,
        error=None,
        swapped=None,
        load_duration=None,
        eval_count=None,
        runner=sub.runner or sub.model,
        working_at=None,
        swap_reason=None,
        swap_from=None,
        ran_after=0,
        jumped=False,
        eval_duration=None,
        body_sha256=sub.body_sha256,
    )


def model_key(name: str) -> str:
    """Ollama's name rules: case-insensitive, a bare name means `:latest`."""
    key = name.strip().lower()
    if ":" not in key.rsplit("/", 1)[-1]:
        key += ":latest"
    return key
