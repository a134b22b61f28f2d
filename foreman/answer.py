"""A job's result from the answer the target sent, by the endpoint the job ran on.

The native and OpenAI chat/completions answers (NDJSON, `data:` lines or one object) are
`foreman/assemble.py`'s; the event-stream APIs (Anthropic Messages, OpenAI Responses) and
transcriptions are `foreman/assemble_events.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable

from foreman.assemble import Outcome, assemble
from foreman.assemble_events import assemble_messages, assemble_responses, assemble_transcription
from foreman.job import V1_MESSAGES, V1_RESPONSES, V1_TRANSCRIPTIONS

_BY_ENDPOINT: dict[str, Callable[[bytes], Outcome]] = {
    V1_MESSAGES: assemble_messages,
    V1_RESPONSES: assemble_responses,
    V1_TRANSCRIPTIONS: assemble_transcription,
}


def outcome_of(endpoint: str, raw: bytes) -> Outcome:
    """The job's result, artifacts and eval count, or the error its answer carries."""
    assembler = _BY_ENDPOINT.get(endpoint)
    return assembler(raw) if assembler is not None else assemble(endpoint, raw)
