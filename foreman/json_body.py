"""Request bodies decoded the way Go's `encoding/json` (and so Ollama) decodes them.

Python's `json` differs from Go's decoder where a hostile body hurts: it recurses (a body
nested some thousand levels deep raised RecursionError, a 500), it accepts `NaN` and
`Infinity`, it refuses integers longer than 4,300 digits with a ValueError (another 500),
and it keeps lone surrogates, which later failed to encode (a third 500). Here a body is
read as Go reads it (docs/wire.md section 0, docs/adr/0023): one JSON value, whatever follows
it ignored; Go's nesting limit (`MAX_DEPTH`); Go's syntax error texts. A number beyond
float64 becomes a `BigNumber`, refused or not by the field it lands in
(`foreman/go_unmarshal.py`); so does an integer past 4,300 digits, while one of 310 to 4,300
digits stays an int (converting integers in C keeps number-heavy bodies fast): refused in
number fields, but in an `interface{}` field left to the target, which refuses it alike.
Stricter than Go, which turns them into U+FFFD: invalid UTF-8 inside strings and lone
surrogate escapes are refused, because foreman stores bodies.

Every path is the C decoder. A body nested deeper than Python's recursion limit allows is
decoded again on a thread of its own with a large stack and a recursion budget of exactly
`MAX_DEPTH` containers, so the depth check costs nothing on the common path and never
overflows the C stack. Go's texts are derived from the C decoder's errors (`_go_error`).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from _json import scanstring  # the C one, as the decoders use
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

from foreman.errors import BadRequest

MAX_DEPTH = 10_000  # Go's encoding/json scanner (maxNestingDepth)
INVALID_UTF8 = "invalid UTF-8 in string literal"

_WS = " \t\r\n"
_LONE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DEEP_STACK = 64 * 1024**2  # the C decoder needs about 2 MiB for MAX_DEPTH levels


class EmptyBody(BadRequest):
    """EOF"""


class BigNumber:
    """A JSON number beyond float64's range: Go refuses it in any number field (kept as written)."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return self.literal


class _Overflow(Exception):
    """A number beyond float64 on the fast path: decode again keeping it as a BigNumber."""


def _fits(literal: str) -> bool:
    return len(literal) < 300 or float(literal) - float(literal) == 0.0  # inf - inf is nan


def _float_checked(literal: str) -> float:
    value = float(literal)
    if value - value != 0.0:
        raise _Overflow
    return value


def _int_kept(literal: str) -> int | BigNumber:
    return int(literal) if _fits(literal) else BigNumber(literal)


def _float_kept(literal: str) -> float | BigNumber:
    value = float(literal)
    return value if value - value == 0.0 else BigNumber(literal)


_CONSTANTS: dict[str, Any] = {}  # parse_constant: a KeyError names the NaN or Infinity met

_Scanner = Callable[[str, int], tuple[Any, int]]


def _scanner(**hooks: Any) -> _Scanner:
    scan: _Scanner = json.JSONDecoder(**hooks).scan_once  # type: ignore[attr-defined]  # the C scanner
    return scan


# The common path: integers in C (past 4,300 digits a ValueError sends the body to `_KEPT`),
# floats through a hook that notices the ones beyond float64.
_CHECKED = _scanner(parse_float=_float_checked, parse_constant=_CONSTANTS.__getitem__)
_KEPT = _scanner(parse_int=_int_kept, parse_float=_float_kept, parse_constant=_CONSTANTS.__getitem__)
# Deep bodies: numbers converted in C, so the recursion budget counts containers only.
_DEEP = _scanner(parse_constant=_CONSTANTS.__getitem__)


def decode(body: bytes) -> tuple[Any, bool]:
    """The first JSON value of `body`, and whether numbers beyond float64 may be in it.

    Raises EmptyBody (nothing but white space) or BadRequest with Go's text.
    """
    text, bad_utf8 = _text(body)
    start = _skip(text, 0)
    if start == len(text):
        raise EmptyBody()
    value, end, big = _scan(text, start)
    if not isinstance(value, dict | list) and end < len(text) and text[end] not in _WS:
        raise BadRequest(_after_value(text, end, "top-level value"))
    if bad_utf8 and _LONE.search(text, start, end):
        raise BadRequest(INVALID_UTF8)
    if "\\" in text and _SURROGATE_ESCAPE.search(text, start, end):  # one backslash: memchr
        _refuse_lone_surrogates(value)
    return value, big


def members(body: bytes) -> list[tuple[str, str]]:
    """The members of an object body that `decode` accepted: (key, the member's text as sent)."""
    text, _ = _text(body)
    i = _skip(text, _skip(text, 0) + 1)
    found: list[tuple[str, str]] = []
    while text[i] != "}":
        key, after = scanstring(text, i + 1)
        _, end, _ = _scan(text, _skip(text, _skip(text, after) + 1))
        found.append((key, text[i:end]))
        i = _skip(text, end)
        if text[i] == ",":
            i = _skip(text, i + 1)
    return found


def go_char(char: str) -> str:
    """A character as Go's scanner quotes it in errors: its first byte, as a rune, in quotes."""
    if char >= "\x80":
        char = chr(ord(char) - 0xDC00 if "\udc80" <= char <= "\udcff" else char.encode()[0])
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return "'" + go_quote(char)[1:-1] + "'"


def go_quote(text: str) -> str:
    """Go's `strconv.Quote` (what `%q` prints)."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        elif char < "\U00010000":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _text(body: bytes) -> tuple[str, bool]:
    try:
        return body.decode(), False
    except UnicodeDecodeError:
        # Each bad byte becomes one lone surrogate: Go's errors name it outside strings.
        return body.decode(errors="surrogateescape"), True


def _skip(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def _scan(text: str, i: int) -> tuple[Any, int, bool]:
    """The value at i, its end, and whether it may hold numbers beyond float64."""
    try:
        value, end = _CHECKED(text, i)
        return value, end, False
    except _Overflow:
        pass
    except RecursionError:
        return *_deep(text, i, _DEEP), True
    except (StopIteration, ValueError, KeyError) as exc:  # JSONDecodeError is a ValueError
        if type(exc) is not ValueError:  # a plain one: an integer past Python's 4,300 digits
            raise BadRequest(_go_error(text, exc)) from None
    try:
        value, end = _KEPT(text, i)
    except RecursionError:
        return *_deep(text, i, _KEPT), True
    except (StopIteration, ValueError, KeyError) as exc:
        raise BadRequest(_go_error(text, exc)) from None
    return value, end, True


def _deep(text: str, i: int, decoder: _Scanner) -> tuple[Any, int]:
    """A body nested deeper than Python's recursion limit: decoded with Go's limit instead.

    The budget counts every call the C decoder makes, containers and hooks alike: `_DEEP`
    makes none but for a NaN (parse_constant), met at the deepest level with one call more;
    `_KEPT`'s hooks need four, so with it a body up to four levels too deep gets through
    (one that also holds a number of more than 4,300 digits).
    """
    slack = 0 if decoder is _DEEP else 4
    try:
        outcome = _run_deep(text, i, decoder, slack)
        if isinstance(outcome, RecursionError) and "JSON" not in str(outcome) and slack == 0:
            outcome = _run_deep(text, i, decoder, 1)
    except _NoDeepThread:  # this host will not give the decoder the stack it needs: too deep here
        raise BadRequest("invalid character '[' exceeded max depth") from None
    if isinstance(outcome, tuple):
        return outcome
    if isinstance(outcome, RecursionError):
        bracket = "{" if "JSON object" in str(outcome) else "["
        raise BadRequest(f"invalid character '{bracket}' exceeded max depth")
    if type(outcome) is ValueError and decoder is _DEEP:
        return _deep(text, i, _KEPT)  # an integer past Python's 4,300 digits
    raise BadRequest(_go_error(text, outcome))


def _run_deep(text: str, i: int, decoder: _Scanner, slack: int) -> tuple[Any, int] | BaseException:
    """`decoder(text, i)` on a thread with a large stack, MAX_DEPTH levels allowed (plus slack)."""
    return _on_deep_thread(text, i, decoder, _offset() + slack)


@functools.cache
def _offset() -> int:
    """What the interpreter counts beyond the thread's frames and the containers: measured once."""
    for offset in range(-4, 8):
        if isinstance(_on_deep_thread("[" * MAX_DEPTH + "]" * MAX_DEPTH, 0, _DEEP, offset), tuple):
            return offset
    raise _NoDeepThread("no recursion budget decodes MAX_DEPTH levels")  # pragma: no cover


class _NoDeepThread(Exception):
    """The thread for deep bodies cannot be had (its stack size refused, no thread to start)."""


def _on_deep_thread(text: str, i: int, decoder: _Scanner, offset: int) -> tuple[Any, int] | BaseException:
    """Run the decoder on a thread of its own, its stack `_DEEP_STACK`, its recursion budget set.

    The recursion limit is the interpreter's, not the thread's: while this thread decodes, the
    event loop's thread waits for it in `join` and runs nothing.
    """
    outcome: list[tuple[Any, int] | BaseException] = []

    def run() -> None:
        depth, frame = 0, cast("FrameType | None", sys._getframe())
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(depth + MAX_DEPTH + offset)
        try:
            outcome.append(decoder(text, i))
        except (RecursionError, StopIteration, ValueError, KeyError) as exc:
            outcome.append(exc)
        finally:
            sys.setrecursionlimit(limit)

    try:
        size = threading.stack_size(_DEEP_STACK)
        try:
            thread = threading.Thread(target=run, name="foreman-deep-json", daemon=True)
            thread.start()
        finally:
            threading.stack_size(size)
    except (ValueError, RuntimeError) as exc:
        raise _NoDeepThread(str(exc)) from None
    thread.join()
    return outcome[0]


def _go_error(text: str, exc: BaseException) -> str:
    """The text Go's scanner gives for the error the C decoder met."""
    if isinstance(exc, KeyError):  # parse_constant: NaN, Infinity or -Infinity
        name = str(exc.args[0])
        where = "in numeric literal" if name.startswith("-") else "looking for beginning of value"
        return f"invalid character '{name.lstrip('-')[0]}' {where}"
    if isinstance(exc, StopIteration):
        pos, message = int(exc.value), "Expecting value"
    elif isinstance(exc, json.JSONDecodeError):
        pos, message = exc.pos, exc.msg
    else:
        return "json: cannot unmarshal number into Go value of type float64"  # 4,300 digits and more
    n = len(text)
    if message.startswith("Unterminated string"):
        return "unexpected EOF"
    if message.startswith("Invalid \\u"):  # pos is the u of \uXXXX
        bad = next((j for j in range(pos + 1, min(pos + 5, n)) if text[j] not in _HEX), None)
        if bad is None:
            return "unexpected EOF"
        return f"invalid character {go_char(text[bad])} in \\u hexadecimal character escape"
    if message.startswith("Invalid \\escape"):  # pos is the backslash
        return f"invalid character {go_char(text[pos + 1])} in string escape code"
    if pos >= n:
        return "unexpected EOF"
    char = text[pos]
    if message.startswith("Invalid control character"):
        return f"invalid character {go_char(char)} in string literal"
    if message.startswith("Expecting property name") or "trailing comma before end of object" in message:
        return f"invalid character {go_char(char)} looking for beginning of object key string"
    if message.startswith("Expecting ':'"):
        return f"invalid character {go_char(char)} after object key"
    if message.startswith("Expecting ','"):
        return _after_value(text, pos, "array element" if _in_array(text, pos) else "object key:value pair")
    return _beginning_of_value(text, pos)


def _beginning_of_value(text: str, pos: int) -> str:
    """No value could start at pos: a literal or a minus sign gone wrong, or a stray character."""
    char = text[pos]
    if char in _LITERALS:
        word = _LITERALS[char]
        for j, expected in enumerate(word[1:], start=pos + 1):
            if j >= len(text):
                return "unexpected EOF"
            if text[j] != expected:
                return f"invalid character {go_char(text[j])} in literal {word} (expecting '{expected}')"
    if char == "-":
        if pos + 1 >= len(text):
            return "unexpected EOF"
        return f"invalid character {go_char(text[pos + 1])} in numeric literal"
    return f"invalid character {go_char(char)} looking for beginning of value"


def _after_value(text: str, pos: int, where: str) -> str:
    """A value ended before pos; where a number did, Go reads on into its fraction or exponent."""
    char = text[pos]
    if char in ".eE" and text[pos - 1] in _DIGITS:
        j = pos - 1
        while j >= 0 and text[j] in _DIGITS:
            j -= 1
        lead = text[j] if j >= 0 else ""
        exponent = lead in ("e", "E") or (lead in ("+", "-") and j >= 1 and text[j - 1] in "eE")
        if char == "." and lead != "." and not exponent:
            return _number_error(text, pos + 1, "after decimal point in numeric literal")
        if char in "eE" and not exponent:
            after = pos + 2 if pos + 1 < len(text) and text[pos + 1] in "+-" else pos + 1
            return _number_error(text, after, "in exponent of numeric literal")
    return f"invalid character {go_char(char)} after {where}"


def _number_error(text: str, pos: int, where: str) -> str:
    return "unexpected EOF" if pos >= len(text) else f"invalid character {go_char(text[pos])} {where}"


def _in_array(text: str, pos: int) -> bool:
    """Whether the container around pos is an array: there, a `]` in its place parses on."""
    probe = text[:pos] + "]" + text[pos + 1 :]
    start = _skip(probe, 0)
    try:
        _CHECKED(probe, start)
        return True
    except RecursionError:
        outcome: Any = _run_deep(probe, start, _DEEP, 0)
    except (StopIteration, ValueError, KeyError, _Overflow) as exc:
        outcome = exc
    return not (isinstance(outcome, json.JSONDecodeError) and outcome.pos == pos)


def _refuse_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:  # no recursion: the value may be MAX_DEPTH deep
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed([part for pair in item.items() for part in pair]))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str) and (found := _LONE.search(item)):
            raise BadRequest(f"invalid surrogate escape '\\u{ord(found.group()):04x}' in string literal")


_LITERALS = {"t": "true", "f": "false", "n": "null"}
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
