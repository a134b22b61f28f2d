"""Byte-level details of Ollama's wire format: JSON in and out, timestamps, errors.

Request bodies are decoded the way Go's `encoding/json` would (whatever the Content-Type,
trailing data ignored, Go's error texts); responses are compact UTF-8 JSON.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from tornado.web import HTTPError

JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()

# Go's MaxInt64 nanoseconds, what "forever" becomes in `expires_at`.
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)


#: Field name -> (accepted Python types, Go type named in the unmarshal error).
FieldTypes = dict[str, tuple[type | tuple[type, ...], str]]


class ApiError(HTTPError):
    """An Ollama-style error reply: `status` with `{"error": message}`.

    `refused_model` marks errors about the model itself (unknown, or lacking a capability);
    `empty` sends no body at all (the Host/Origin guard's 403).
    """

    def __init__(self, status: int, message: str, *, refused_model: bool = False, empty: bool = False) -> None:
        super().__init__(status)
        self.message = message
        self.refused_model = refused_model
        self.empty = empty


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def dumpb(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


class Verbatim(dict[str, Any]):
    """A JSON object Go copies as it came (a `json.RawMessage`): `go_dumpb` never sorts its keys."""


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _go_value(value: Any, sort_keys: bool) -> Any:
    if isinstance(value, dict):
        inner = sort_keys and not isinstance(value, Verbatim)
        items = sorted(value.items()) if inner else list(value.items())
        return {key: _go_value(item, inner) for key, item in items}
    if isinstance(value, list | tuple):
        return [_go_value(item, sort_keys) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # Go writes float64 1.0 as 1
    return value


def go_map(value: Any) -> Any:
    """`value` with every object's keys sorted, as Go writes a `map[string]any` inside a struct."""
    return _go_value(value, True)


def go_dumps(value: Any, *, sort_keys: bool = False) -> str:
    """JSON as Go's `encoding/json` writes it: compact, `<>&` escaped, whole floats without ".0";
    `sort_keys` for a Go map (every nested object sorted too, except `Verbatim` ones)."""
    return _ENCODER.encode(_go_value(value, sort_keys)).translate(_GO_ESCAPES)


def go_dumpb(value: Any, *, sort_keys: bool = False) -> bytes:
    return go_dumps(value, sort_keys=sort_keys).encode()


def go_kind(value: object) -> str:
    """The JSON kind name Go uses in unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _quote_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return f"'{char}'"


def _syntax_error(text: str, err: json.JSONDecodeError) -> str:
    """Translate a Python decode error into the text Go's decoder gives."""
    pos = err.pos
    if pos >= len(text) or err.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    literal = next((word for word in ("true", "false", "null") if word[0] == text[pos]), None)
    if literal is not None:
        # Go commits to a literal on its first letter and reports the first wrong one.
        for offset, expected in enumerate(literal[1:], start=1):
            if pos + offset >= len(text):
                return "unexpected EOF"
            if text[pos + offset] != expected:
                found = _quote_char(text[pos + offset])
                return f"invalid character {found} in literal {literal} (expecting {_quote_char(expected)})"
    char = _quote_char(text[pos])
    msg = err.msg
    if msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if msg.startswith("Expecting ','"):
        before = text[:pos].rstrip()
        inside_array = before.rfind("[") > before.rfind("{")
        where = "array element" if inside_array else "object key:value pair"
        return f"invalid character {char} after {where}"
    if msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    if msg.startswith("Invalid \\escape"):
        return f"invalid character {char} in string escape code"
    return f"invalid character {char} looking for beginning of value"


def decode_body(raw: bytes, go_type: str) -> dict[str, Any]:
    """Decode a request body into a dict as gin's `ShouldBindJSON` would, or raise ApiError(400)."""
    text = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise ApiError(400, "missing request body")
    try:
        value, _ = _DECODER.raw_decode(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, _syntax_error(text, err)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"json: cannot unmarshal {go_kind(value)} into Go value of type {go_type}")
    return value


def check_types(body: dict[str, Any], struct: str, spec: FieldTypes) -> None:
    """Reject fields of the wrong JSON type with Go's unmarshal error (null is always fine)."""
    for name, (allowed, go_type) in spec.items():
        value = body.get(name)
        if value is None:
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in _as_tuple(allowed))
        if not ok:
            raise ApiError(
                400,
                f"json: cannot unmarshal {go_kind(value)} into Go struct field {struct}.{name} of type {go_type}",
            )


def _as_tuple(allowed: type | tuple[type, ...]) -> tuple[type, ...]:
    return allowed if isinstance(allowed, tuple) else (allowed,)


class Clock:
    """`created_at` strings, RFC3339 with nanoseconds trimmed, cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def created_at(self) -> str:
        ns = time.time_ns()
        second, frac = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        if frac:
            return f"{self._prefix}.{frac:09d}".rstrip("0") + "Z"
        return self._prefix + "Z"


def local_time(wall: float) -> str:
    """Server-local time with offset (Go RFC3339Nano); `math.inf` means Go's "forever"."""
    if wall == float("inf"):
        moment = datetime.now().astimezone() + _FOREVER
    else:
        moment = datetime.fromtimestamp(wall).astimezone()
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
