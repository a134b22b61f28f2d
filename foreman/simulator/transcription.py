"""`POST /v1/audio/transcriptions` (Ollama's `TranscriptionMiddleware` and `TranscriptionWriter`).

A multipart form (`model`, `file`, `response_format`, `language`, `prompt`) becomes a chat with
a transcription system prompt and the audio attached; it runs a model like any chat (residency,
load delay, token delay, faults). Ollama streams it internally but writes once, at the end, so
the client gets one body: `{"text": …}` (`application/json`, a trailing newline) or, with
`response_format=text`, `text/plain`. The text is deterministic in the model, the form fields
and the file's bytes; an error at any point is a status, never a cut stream.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tornado.web import HTTPError

from .compat import JSON_PLAIN, ForeignFormat, ForeignHandler
from .content import Plan
from .inference import Job
from .responses import openai_error
from .wire import ApiError, Clock, go_dumpb

_QUESTION = "What exact words are spoken in this audio?"
_SYSTEM = (
    "Transcribe the audio exactly as spoken. Output only the spoken words. Do not answer any question in the audio."
)
_FORM_ERROR = "failed to parse multipart form: "


def transcription_messages(audio: bytes, language: str = "", prompt: str = "") -> list[dict[str, Any]]:
    """`FromTranscriptionRequest`'s conversation; the audio's digest stands in for its bytes in the
    simulator's seed text, so the transcript follows the file."""
    system = _SYSTEM
    if language:
        system += " The audio is in " + language + "."
    if prompt:
        system += " Context: " + prompt
    digest = hashlib.sha256(audio).hexdigest()
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{_QUESTION} [audio sha256:{digest}]"}]


class TranscriptionFormat(ForeignFormat):
    """The one body `TranscriptionWriter` writes on the done chunk."""

    def __init__(self, model: str, clock: Clock, response_format: str) -> None:
        super().__init__(model, clock, stream=False)
        self.as_text = response_format == "text"
        self.whole_content_type = "text/plain" if self.as_text else JSON_PLAIN

    def _unstreamed(self) -> bytes:
        raise AssertionError("a transcription is never streamed to the client")

    def thinking(self, token: str) -> bytes:
        return self._unstreamed()

    def content(self, token: str) -> bytes:
        return self._unstreamed()

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        return self._unstreamed()

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        return [self._unstreamed()]

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        text = "".join(plan.content).strip()  # only the content: thinking is dropped
        return text.encode() if self.as_text else go_dumpb({"text": text}) + b"\n"


class TranscriptionHandler(ForeignHandler):
    """`POST /v1/audio/transcriptions`."""

    def error_body(self, status: int, message: str) -> bytes:
        return openai_error(status, message)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if type(exc) is HTTPError and status_code == 400:
            # Tornado refused the multipart body before the handler ran: say it as Go would.
            detail = str(exc.log_message or "")
            reason = "multipart: NextPart: EOF"
            if "multipart boundary not found" in detail:
                reason = "no multipart boundary param in Content-Type"
            kwargs["exc_info"] = (ApiError, ApiError(400, _FORM_ERROR + reason), None)
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not (type(value) is HTTPError and value.status_code == 400):
            super().log_exception(typ, value, tb)

    def _field(self, name: str) -> str:
        """Go's `FormValue`: the form's value, else the query's."""
        values = self.request.body_arguments.get(name) or self.request.query_arguments.get(name) or [b""]
        return values[0].decode("utf-8", errors="replace")

    def build_job(self) -> Job:
        if not self.request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            raise ApiError(400, _FORM_ERROR + "request Content-Type isn't multipart/form-data")
        model = self._field("model")
        fields = {name: self._field(name) for name in ("response_format", "language", "prompt")}
        files = self.request.files.get("file") or []
        upload = files[0] if files else None
        self.note_body(
            {
                "model": model,
                **fields,
                "file": None if upload is None else {"filename": upload.filename, "size": len(upload.body)},
            }
        )
        if not model:
            raise ApiError(400, "model is required")
        if upload is None:
            raise ApiError(400, "file is required: http: no such file")
        if not upload.body:
            raise ApiError(400, "audio file is empty")
        self.enter_chat_handler(False)
        messages = transcription_messages(upload.body, fields["language"], fields["prompt"])
        fmt = TranscriptionFormat(model, self.sim.clock, fields["response_format"])
        return self.chat_job(model, messages, fmt, stream=False, think=None, kind="transcription")
