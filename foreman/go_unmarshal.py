"""A decoded body checked against a Go struct as `encoding/json` would fill it: Go's type errors.

foreman forwards bodies as they came (docs/adr/0003) and never builds Ollama's structs
(`foreman/ollama_structs.py`). It checks a decoded body (`foreman/json_body.py`) against them
at submit, so that what Ollama would refuse while decoding is refused before anything is
queued, with Go's text (docs/wire.md section 0, docs/adr/0023). A key names a field as in
Go: exactly, else ignoring case; a later duplicate wins; unknown keys are ignored. As in Go, the first wrong type
in document order is reported, unless a field decoded by its own `UnmarshalJSON`
(`keep_alive`, `think`, a chat message) fails first: that error ends the decoding at once.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from foreman.errors import BadRequest
from foreman.json_body import BigNumber, go_quote

_STRING, _BOOL, _INT, _FLOAT, _ANY, _RAW, _BYTES, _SLICE, _MAP, _STRUCT, _MESSAGE, _DURATION, _THINK = range(13)
_INT64 = 2**63
_FLOAT32_MAX = 3.4028235677973366e38  # beyond it, ParseFloat(s, 32) overflows
_THINK_LEVELS = ("high", "medium", "low", "max")
_THINK_HELP = '"high", "medium", "low", "max", true, or false'
_ALL = frozenset((str, bool, int, float, list, dict, BigNumber))
_STR_OR_NULL = frozenset((str, type(None)))
_PLAIN = {  # the values of these kinds that are right as they are
    _STRING: frozenset((str,)),
    _BOOL: frozenset((bool,)),
    _RAW: _ALL,
    _BYTES: frozenset((str, list)),
    _THINK: frozenset((bool,)),
}
# The JSON kinds each Go kind takes (the others are checked further, or take anything).
_SHAPES: dict[int, tuple[type, ...]] = {
    _STRING: (str,),
    _BOOL: (bool,),
    _SLICE: (list,),
    _MAP: (dict,),
    _STRUCT: (dict,),
    _BYTES: (str, list),  # []byte: a base64 string, or an array of bytes
}


class GoType:
    """A Go type as the decoder sees it; `name` is how `reflect.Type.String()` prints it."""

    __slots__ = ("bits", "elem", "items_plain", "kind", "name", "nullable", "plain", "plain_or_null", "struct")

    def __init__(
        self,
        kind: int,
        name: str,
        *,
        elem: GoType | None = None,
        struct: Struct | None = None,
        nullable: bool = False,
        bits: int = 64,
    ) -> None:
        self.kind, self.name, self.elem, self.struct = kind, name, elem, struct
        self.nullable, self.bits = nullable, bits
        # The JSON kinds that need no look inside (the fast path); other values are walked.
        self.plain: frozenset[type] = _PLAIN.get(kind, frozenset())
        self.plain_or_null = self.plain | {type(None)}
        # An array of structs: their plain fields (see `_plain`).
        self.items_plain = elem.struct.plain if elem is not None and elem.struct is not None else None


class Struct:
    """A Go struct: its fields by JSON name."""

    def __init__(self, type_name: str, fields: dict[str, GoType]) -> None:
        self.type_name = type_name  # "api.ChatRequest"
        self.name = type_name.rsplit(".", 1)[-1]  # "ChatRequest", as errors name it
        self.fields = {name: (name, t) for name, t in fields.items()}
        self.folded = {_fold(name): (name, t) for name, t in fields.items()}
        self.plain = {name: t.plain_or_null for name, t in fields.items() if t.plain}

    def field(self, key: str) -> str | None:
        """The field a JSON key fills (its JSON name), None for a key Go ignores."""
        found = self.fields.get(key) or self.folded.get(_fold(key))
        return found[0] if found else None


def _fold(key: str) -> str:
    """Go's case folding of JSON keys (`foldName`), for the ASCII names fields have."""
    return key.lower().replace("\u017f", "s")  # the long s folds to s; the Kelvin sign lowers to k


def check(value: dict[str, Any], struct: Struct, big: bool) -> dict[str, Any]:
    """The struct's fields as Go would fill them (by JSON name), or BadRequest with Go's text.

    `big`: the body may hold numbers beyond float64 (`json_body.decode`), to look for in
    fields typed `interface{}`.
    """
    walk = _Walk(big)
    resolved: dict[str, Any] = {}
    fields, folded = struct.fields, struct.folded  # exact names first; folding only on a miss
    try:
        for key, item in value.items():
            found = fields.get(key) or folded.get(_fold(key))
            if found is None:
                continue
            name, t = found
            if item is None:
                if t.nullable:
                    resolved[name] = None  # null clears a pointer, slice, map or interface
                continue  # and leaves anything else as it was
            resolved[name] = item
            if type(item) in t.plain or (t.kind == _MAP and type(item) is dict and not big):
                continue  # a string, a bool, options without huge numbers: right as they are
            plain = t.items_plain  # a short chat history of plain messages (a longer one: `_all_plain`)
            if (
                plain is not None
                and type(item) is list
                and len(item) <= 8
                and all(type(x) is dict and _plain(x, plain) for x in item)
            ):
                continue
            walk.value(item, t, struct.name, (), name)
    except _Fatal as fatal:
        raise BadRequest(_text(fatal.error)) from None
    if walk.saved is not None:
        raise BadRequest(_text(walk.saved))
    return resolved


class _TypeError:
    """Go's `*json.UnmarshalTypeError`: what came, the Go type, and where (struct, field path)."""

    __slots__ = ("field", "struct", "type_name", "value")

    def __init__(self, value: str, type_name: str, struct: str = "", field: str = "") -> None:
        self.value, self.type_name, self.struct, self.field = value, type_name, struct, field


_Error = _TypeError | str


class _Fatal(Exception):
    """An error from a type's own UnmarshalJSON: Go stops decoding there."""

    def __init__(self, error: _Error) -> None:
        self.error = error


def _text(error: _Error) -> str:
    if isinstance(error, str):
        return error
    into = f"Go struct field {error.struct}.{error.field}" if error.struct or error.field else "Go value"
    return f"json: cannot unmarshal {error.value} into {into} of type {error.type_name}"


class _Walk:
    """One decoding: the first saved type error (Go keeps decoding after one)."""

    def __init__(self, big: bool) -> None:
        self.big = big
        self.saved: _Error | None = None

    def save(self, error: _Error) -> None:
        if self.saved is None:
            self.saved = error

    def value(self, value: Any, t: GoType, struct: str, path: tuple[str, ...], name: str) -> None:
        """Check `value` (not null) against `t`, met as field `name` of `struct` at `path`."""
        kind = t.kind
        shapes = _SHAPES.get(kind)
        if shapes is not None and type(value) not in shapes:
            self.save(_TypeError(_kind(value), t.name, struct, _join(path, name)))
        elif kind == _SLICE:
            assert t.elem is not None
            self._slice(value, t.elem, struct, path, name)
        elif kind in (_INT, _FLOAT):
            self._number(value, t, struct, path, name)
        elif kind in (_ANY, _MAP):
            if self.big and (big := _first_big(value)) is not None:
                self.save(_TypeError(f"number {_literal(big)}", "float64", struct, _join(path, name)))
        elif kind == _STRUCT:
            assert t.struct is not None
            self.fields(value, t.struct, (*path, name))
        elif kind == _MESSAGE:
            self._message(value, t, struct, path, name)
        elif kind == _DURATION:
            self._duration(value, struct, path, name)
        elif kind == _THINK:
            if type(value) is str and value not in _THINK_LEVELS:
                raise _Fatal(f"invalid think value: {go_quote(value)} (must be {_THINK_HELP})")
            if type(value) is not str and type(value) is not bool:
                raise _Fatal(f"think must be a boolean or string ({_THINK_HELP})")

    def _slice(self, value: list[Any], elem: GoType, struct: str, path: tuple[str, ...], name: str) -> None:
        """An array: whole in C where it can (a long history, a token context), else item by item."""
        plain = elem.struct.plain if elem.struct is not None else None
        if plain is not None:  # objects: chat messages, tools
            if len(value) > 8 and _all_plain(value, plain):
                return
            for item in value:
                if item is not None and not (type(item) is dict and _plain(item, plain)):
                    self.value(item, elem, struct, path, name)
            return
        if elem.kind == _INT:
            try:  # ints only (bools pass too), each within int64 but -2**63, in one pass
                if max(map(int.bit_length, value), default=0) < 64:
                    return
            except TypeError:
                pass
        elif set(map(type, value)) <= elem.plain_or_null:
            return
        for item in value:
            if item is not None:
                self.value(item, elem, struct, path, name)

    def fields(self, value: dict[str, Any], struct: Struct, path: tuple[str, ...]) -> None:
        for key, item in value.items():
            found = struct.fields.get(key) or struct.folded.get(_fold(key))
            if found is not None and item is not None and type(item) not in found[1].plain:
                self.value(item, found[1], struct.name, path, found[0])

    def _number(self, value: Any, t: GoType, struct: str, path: tuple[str, ...], name: str) -> None:
        if type(value) not in (int, float, BigNumber):
            self.save(_TypeError(_kind(value), t.name, struct, _join(path, name)))
        elif t.kind == _INT:
            if type(value) is not int or not -_INT64 <= value < _INT64:
                self.save(_TypeError(f"number {_literal(value)}", t.name, struct, _join(path, name)))
        elif _beyond_float64(value) or (t.bits == 32 and abs(float(value)) > _FLOAT32_MAX):
            self.save(_TypeError(f"number {_literal(value)}", t.name, struct, _join(path, name)))

    def _message(self, value: Any, t: GoType, struct: str, path: tuple[str, ...], name: str) -> None:
        """api.Message decodes itself (through a local type `Alias`); its first error is final,
        named from the enclosing struct (`addErrorContext`)."""
        saved, self.saved = self.saved, None
        error: _Error | None
        try:
            if type(value) is dict:
                assert t.struct is not None
                self.fields(value, t.struct, ())
                error = self.saved
            else:
                error = _TypeError(_kind(value), "api.Alias")
        except _Fatal as fatal:
            error = fatal.error
        self.saved = saved
        if error is None:
            return
        if isinstance(error, _TypeError):
            error.struct = struct
            error.field = _join(path, name) + (f".{error.field}" if error.field else "")
        raise _Fatal(error)

    def _duration(self, value: Any, struct: str, path: tuple[str, ...], name: str) -> None:
        """api.Duration (keep_alive): a number of seconds or a Go duration string."""
        if self.big and (big := _first_big(value)) is not None:
            raise _Fatal(_TypeError(f"number {_literal(big)}", "float64", struct, _join(path, name)))
        if type(value) is str:
            problem = parse_duration_error(value)
            if problem is not None:
                raise _Fatal(problem)
        elif type(value) not in (int, float):
            go_type = {bool: "bool", dict: "map[string]interface {}", list: "[]interface {}"}[type(value)]
            raise _Fatal(f"Unsupported type: '{go_type}'")


def _all_plain(items: list[dict[str, Any]], plain: dict[str, frozenset[type]]) -> bool:
    """`_plain` for a whole array of objects whose members are all strings (chat messages), in C."""
    keys = set(chain.from_iterable(items))
    if not keys <= plain.keys() or not set(map(type, chain.from_iterable(map(dict.values, items)))) <= _STR_OR_NULL:
        return False
    return all(str in plain[key] for key in keys)


def _plain(value: dict[str, Any], plain: dict[str, frozenset[type]]) -> bool:
    """Whether every key of `value` names a field whose value is right as it is (else: walk it)."""
    for key, item in value.items():
        kinds = plain.get(key)
        if kinds is None or type(item) not in kinds:
            return False
    return True


def _join(path: tuple[str, ...], name: str) -> str:
    return ".".join((*path, name)) if path else name


def _kind(value: Any) -> str:
    """The JSON kind, as Go's errors name it."""
    if type(value) is str:
        return "string"
    if type(value) is bool:
        return "bool"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return "number"


def _literal(value: Any) -> str:
    if isinstance(value, BigNumber):
        return value.literal
    return str(value) if type(value) is int else repr(value)


def _beyond_float64(value: Any) -> bool:
    """A number no float64 holds (Go's ParseFloat overflows): a BigNumber, or on a deep body's
    path (numbers converted in C) an infinite float or a huge int."""
    if type(value) is float:
        return value - value != 0.0
    if type(value) is int:
        if -(2**1023) < value < 2**1023:
            return False
        try:
            float(value)
        except OverflowError:
            return True
        return False
    return type(value) is BigNumber


def _first_big(value: Any) -> Any:
    """The first number of `value` beyond float64, in document order (no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            stack.extend(reversed(item.values()))
        elif type(item) is list:
            stack.extend(reversed(item))
        elif type(item) is not str and type(item) is not bool and item is not None and _beyond_float64(item):
            return item
    return None


_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_UNITS["h"] = 3600 * 10**9


def parse_duration_error(text: str) -> str | None:
    """The error of Go's `time.ParseDuration(text)`, None when it parses (a port of its checks)."""
    invalid = f"time: invalid duration {_time_quote(text)}"
    s = text[1:] if text[:1] in ("+", "-") else text
    if s == "0":
        return None
    if not s:
        return invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            return invalid
        digits = _leading_digits(s)
        whole, s = s[:digits], s[digits:]
        if whole and int(whole) > 2**63:
            return invalid
        fraction = ""
        if s[:1] == ".":
            places = _leading_digits(s[1:])
            fraction, s = s[1 : 1 + places], s[1 + places :]
        if not whole and not fraction:
            return invalid
        end = next((i for i, c in enumerate(s) if c == "." or "0" <= c <= "9"), len(s))
        unit, s = s[:end], s[end:]
        if not unit:
            return f"time: missing unit in duration {_time_quote(text)}"
        if unit not in _UNITS:
            return f"time: unknown unit {_time_quote(unit)} in duration {_time_quote(text)}"
        value, scale = int(whole or "0"), _UNITS[unit]
        if value > 2**63 // scale:
            return invalid
        value *= scale
        kept, places = _leading_fraction(fraction)
        if kept:
            value += int(float(kept) * (float(scale) / 10.0**places))
            if value > 2**63:
                return invalid
        total += value
        if total > 2**63:
            return invalid
    if text[:1] != "-" and total > 2**63 - 1:
        return invalid
    return None


def _leading_digits(s: str) -> int:
    return len(s) - len(s.lstrip("0123456789"))


def _leading_fraction(digits: str) -> tuple[int, int]:
    """Go's `leadingFraction`: the leading digits that fit in an int64, and how many there are."""
    value = places = 0
    for char in digits:
        grown = value * 10 + int(char)
        if value > (2**63 - 1) // 10 or grown > 2**63:
            break
        value, places = grown, places + 1
    return value, places


def _time_quote(text: str) -> str:
    """The `quote` of Go's time package: ASCII kept, every other byte as \\xNN."""
    out = ['"']
    for char in text:
        if char >= "\x80" or char < " ":
            out.extend(f"\\x{byte:02x}" for byte in char.encode(errors="surrogatepass"))
        else:
            out.append("\\" + char if char in '"\\' else char)
    out.append('"')
    return "".join(out)


def _t(kind: int, name: str, **kw: Any) -> GoType:
    return GoType(kind, name, **kw)


STRING = _t(_STRING, "string")
BOOL = _t(_BOOL, "bool")
BOOL_PTR = _t(_BOOL, "bool", nullable=True)
INT = _t(_INT, "int")
INT_PTR = _t(_INT, "int", nullable=True)
FLOAT64_PTR = _t(_FLOAT, "float64", nullable=True)
FLOAT32 = _t(_FLOAT, "float32", bits=32)
FLOAT32_PTR = _t(_FLOAT, "float32", bits=32, nullable=True)
ANY = _t(_ANY, "interface {}", nullable=True)
RAW = _t(_RAW, "json.RawMessage", nullable=True)
OPTIONS = _t(_MAP, "map[string]interface {}", nullable=True)
DURATION = _t(_DURATION, "api.Duration", nullable=True)
THINK = _t(_THINK, "api.ThinkValue", nullable=True)
IMAGES = _t(_SLICE, "[]api.ImageData", elem=_t(_BYTES, "api.ImageData"), nullable=True)


def slice_of(elem: GoType, name: str) -> GoType:
    """A Go slice (`name` as Go prints it: `[]api.Message`, or a named type: `api.Tools`)."""
    return _t(_SLICE, name, elem=elem, nullable=True)


def struct_of(struct: Struct, *, nullable: bool = False) -> GoType:
    """A struct field (`nullable`: a pointer to one)."""
    return _t(_STRUCT, struct.type_name, struct=struct, nullable=nullable)


def message_of(struct: Struct) -> GoType:
    """api.Message, which decodes itself through a local type `Alias` (errors name it)."""
    return _t(_MESSAGE, struct.type_name, struct=struct)


STRING_PTR = _t(_STRING, "string", nullable=True)
