"""A fast Ollama-shaped target for benchmarks: one asyncio.Protocol, no Tornado (docs/adr/0028).

The Tornado simulator is faithful (faults, delays, residency, every route) but takes about
0.5 ms to a first byte, so a benchmark that measures foreman against it flatters foreman.
This answers only what the benchmarks and a foreman in front of it send, as cheaply as
Python can: `/api/chat` and `/api/generate` (streamed one line per token, or whole),
`/api/embed`, `/api/tags`, `/api/ps`, `/api/version` and `/`, over keep-alive HTTP/1.1
parsed by httptools. No faults, delays, thinking or tool calls; the text is deterministic.
It imports no Tornado module, so it stays light::

    python -m foreman simulate --fast --listen 127.0.0.1:11434
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, cast

import httptools

from .fast_wire import Clock, Refused, decode, keep_alive, local_time, num_predict
from .models import DEFAULT_MODELS, Inventory, ModelInfo

VERSION = "0.12.3"  # what the Tornado simulator reports too
_BATCH = 32  # streamed lines written per turn of the event loop, so other connections get a turn
_CHUNKED_FROM = 2048  # Go's net/http: a smaller whole body goes out with Content-Length, else chunked
_STATUS = {200: b"200 OK", 400: b"400 Bad Request", 404: b"404 Not Found", 405: b"405 Method Not Allowed"}
_JSON = b"application/json; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"

# fmt: off
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "seven", "small", "owls",
    "watch", "from", "an", "old", "oak", "tree", "near", "river", "banks", "where", "silver", "fish",
    "swim", "under", "bright", "summer", "skies", "and", "gentle", "winds",
)
# fmt: on
_TOKENS = [w + " " for w in _WORDS]
_CHAT_TAIL = [b'","message":{"role":"assistant","content":"' + t.encode() + b'"},"done":false}\n' for t in _TOKENS]
_GENERATE_TAIL = [b'","response":"' + t.encode() + b'","done":false}\n' for t in _TOKENS]
_SEQ_MASK = 4095
_SEQ = [int.from_bytes(hashlib.blake2b(i.to_bytes(2, "little"), digest_size=1).digest()) % 32 for i in range(4096)]


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\0".join(parts).encode(), digest_size=4).digest(), "little")


class Residency:
    """Which models are loaded and until when, as `/api/ps` reports them (loads take no time)."""

    def __init__(self, max_loaded: int) -> None:
        self.max_loaded = max_loaded
        self._loaded: dict[str, tuple[ModelInfo, float, float]] = {}  # key -> (model, duration, expires)

    def use(self, info: ModelInfo, duration: float | None) -> bool:
        """The model serves a request now; True if that loaded it. None keeps a loaded model's duration."""
        now = time.time()
        self._expire(now)
        entry = self._loaded.pop(info.key, None)
        if duration is None:
            duration = entry[1] if entry is not None else 300.0  # OLLAMA_KEEP_ALIVE's default, 5m
        self._loaded[info.key] = (info, duration, now + duration)  # last used last
        while len(self._loaded) > self.max_loaded:
            del self._loaded[next(iter(self._loaded))]
        return entry is None

    def unload(self, info: ModelInfo) -> None:
        self._loaded.pop(info.key, None)

    def listing(self) -> list[tuple[ModelInfo, float]]:
        """(model, expiry as wall time), longest remaining first."""
        self._expire(time.time())
        return sorted(((m, exp) for m, _, exp in self._loaded.values()), key=lambda pair: -pair[1])

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, _, exp) in self._loaded.items() if exp <= now]:
            del self._loaded[key]


class State:
    """What every connection shares: the inventory, the residency, the clock, the default length."""

    def __init__(self, models: list[str], default_tokens: int, max_loaded: int) -> None:
        self.inventory = Inventory(models)
        self.residency = Residency(max_loaded)
        self.clock = Clock()
        self.default_tokens = default_tokens
        self.transports: set[asyncio.BaseTransport] = set()  # every open connection's, to close at stop
        self._names: dict[str, ModelInfo] = {}

    def model(self, body: dict[str, Any], required: str | None, embed: bool = False) -> tuple[str, ModelInfo]:
        """The request's model as sent and its info; `required` is the error text of a missing one
        (None: a 404, as generate and embed answer)."""
        name = body.get("model")
        if not isinstance(name, str) or not name.strip():
            if required is not None:
                raise Refused(400, required)
            raise Refused(404, "model '' not found")
        info = self._names.get(name)
        if info is None:
            info = self.inventory.get(name)
            if info is not None:
                self._names[name] = info  # the inventory never changes here: keep the spelling's answer
        if info is None and embed:  # Go's %q, and a hint
            raise Refused(404, f"model {json.dumps(name, ensure_ascii=False)} not found, try pulling it first")
        if info is None:
            raise Refused(404, f"model '{name}' not found")
        return name, info


# --- the routes --------------------------------------------------------------------------------


class Generation:
    """One chat or generate request's output: `count` tokens from the sequence at `seed`."""

    def __init__(self, state: State, chat: bool, model: str, info: ModelInfo, text: str, body: dict[str, Any]) -> None:
        limit = num_predict(body.get("options"))
        self.count, self.reason = (state.default_tokens, "stop")
        if limit is not None and limit > 0:
            self.count, self.reason = limit, "length"
        self.seed = _seed(info.key, text)
        self.prompt_tokens = len(text.split()) + 1
        self.chat = chat
        self.model = model
        self.clock = state.clock
        self.started = time.perf_counter()
        self.load_ns = 0
        self.context_ids = None if chat or body.get("raw") else self.prompt_tokens + self.count  # how many

    def text(self) -> str:
        seq, seed = _SEQ, self.seed
        return "".join([_TOKENS[seq[(seed + i) & _SEQ_MASK]] for i in range(self.count)])

    def lines(self) -> Iterator[bytes]:
        """The streamed NDJSON lines, the `done` line last."""
        head = b'{"model":' + _dumpb(self.model) + b',"created_at":"'
        tails = _CHAT_TAIL if self.chat else _GENERATE_TAIL
        seq, seed, now = _SEQ, self.seed, self.clock.created_at
        begun = time.perf_counter()
        for i in range(self.count):
            yield head + now() + tails[seq[(seed + i) & _SEQ_MASK]]
        yield self.final("", begun) + b"\n"

    def final(self, text: str, begun: float) -> bytes:
        """The `done` line, or the whole answer with `text`: formatted, not encoded, in the
        field order of Go's structs."""
        end = time.perf_counter()
        content = b'"' + text.encode() + b'"'  # the vocabulary needs no escaping
        middle = (b'"message":{"role":"assistant","content":%b}' if self.chat else b'"response":%b') % content
        context = b""
        if self.context_ids is not None:
            ids = ",".join([str((self.seed + i * 7919) % 128000 + 1) for i in range(self.context_ids)])
            context = b',"context":[%b]' % ids.encode()
        eval_ns = max(int((end - begun) * 1e9), 1)
        prompt_ns = self.prompt_tokens * 1000
        total = max(int((end - self.started) * 1e9), self.load_ns + prompt_ns + eval_ns)
        load = b',"load_duration":%d' % self.load_ns if self.load_ns else b""
        return (
            b'{"model":%b,"created_at":"%b",%b,"done":true,"done_reason":"%b"%b,"total_duration":%d%b,'
            b'"prompt_eval_count":%d,"prompt_eval_duration":%d,"eval_count":%d,"eval_duration":%d}'
            % (
                _dumpb(self.model),
                self.clock.created_at(),
                middle,
                self.reason.encode(),
                context,
                total,
                load,
                self.prompt_tokens,
                prompt_ns,
                self.count,
                eval_ns,
            )
        )


Answer = tuple[int, bytes, bytes] | Iterator[bytes]  # (status, content type, body), or streamed lines


def _done_reply(state: State, chat: bool, model: str, reason: str) -> Answer:
    out: dict[str, Any] = {"model": model, "created_at": state.clock.created_at().decode()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update(done=True, done_reason=reason)
    return 200, _JSON, _dumpb(out)


def _generation(state: State, raw: bytes, chat: bool) -> Answer:
    body = decode(raw)
    model, info = state.model(body, "model is required" if chat else None)
    duration = keep_alive(body.get("keep_alive"))
    if chat:
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise Refused(400, "json: cannot unmarshal into Go struct field ChatRequest.messages of type []api.Message")
        text = "\n".join(f"{m.get('role') or ''}: {m.get('content') or ''}" for m in messages)
    else:
        prompt = body.get("prompt") or ""
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    if not text and duration == 0:
        state.residency.unload(info)
        return _done_reply(state, chat, model, "unload")
    if info.embedding_only:
        raise Refused(400, f'"{model}" does not support {"chat" if chat else "generate"}')
    started = time.perf_counter()
    loaded = state.residency.use(info, duration)
    if not text:
        return _done_reply(state, chat, model, "load")
    gen = Generation(state, chat, model, info, text, body)
    gen.started = started
    gen.load_ns = (int((time.perf_counter() - started) * 1e9) or 1) if loaded else 0
    if body.get("stream") is False:
        return 200, _JSON, gen.final(gen.text(), time.perf_counter())
    return gen.lines()


def _embed(state: State, raw: bytes) -> Answer:
    body = decode(raw)
    started = time.perf_counter()
    model, info = state.model(body, None, embed=True)
    duration = keep_alive(body.get("keep_alive"))
    value = body.get("input")
    inputs = [] if value is None or value == "" else [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise Refused(400, "invalid input type")
    loaded = state.residency.use(info, duration)
    if not inputs:
        return 200, _JSON, _dumpb({"model": model, "embeddings": []})
    vectors = b",".join([_vector(info.key, text) for text in inputs])
    total = max(int((time.perf_counter() - started) * 1e9), 1)
    count = sum(len(text.split()) + 1 for text in inputs)
    return (
        200,
        _JSON,
        b'{"model":%b,"embeddings":[%b],"total_duration":%d,"load_duration":%d,"prompt_eval_count":%d}'
        % (
            _dumpb(model),
            vectors,
            total,
            total if loaded else 0,
            count,
        ),
    )


@functools.lru_cache(maxsize=4096)
def _vector(key: str, text: str) -> bytes:
    """32 deterministic components, L2-normalised as Ollama's are, as JSON (the same input
    always gets the same vector, so it is computed once)."""
    raw = struct.unpack("<32h", hashlib.blake2b(f"{key}\0{text}".encode(), digest_size=64).digest())
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return _dumpb([round(x / norm, 9) for x in raw])


def _tags(state: State, _raw: bytes) -> Answer:
    models = [
        {
            "name": m.name,
            "model": m.name,
            "modified_at": local_time(m.modified),
            "size": m.size,
            "digest": m.digest,
            "details": m.details(),
        }
        for m in state.inventory.all()
    ]
    return 200, _JSON, _dumpb({"models": models})


def _ps(state: State, _raw: bytes) -> Answer:
    models = [
        {
            "name": m.name,
            "model": m.name,
            "size": m.size,
            "digest": m.digest,
            "details": m.details(),
            "expires_at": local_time(expiry),
            "size_vram": m.size,
            "context_length": 4096,
        }
        for m, expiry in state.residency.listing()
    ]
    return 200, _JSON, _dumpb({"models": models})


def _dumpb(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


Route = Callable[[State, bytes], Answer]
_GET = (b"GET", b"HEAD")
ROUTES: dict[bytes, tuple[tuple[bytes, ...], Route]] = {
    b"/": (_GET, lambda _s, _r: (200, _TEXT, b"Ollama is running")),
    b"/api/version": (_GET, lambda _s, _r: (200, _JSON, _dumpb({"version": VERSION}))),
    b"/api/tags": (_GET, _tags),
    b"/api/ps": ((b"GET",), _ps),
    b"/api/chat": ((b"POST",), lambda s, r: _generation(s, r, chat=True)),
    b"/api/generate": ((b"POST",), lambda s, r: _generation(s, r, chat=False)),
    b"/api/embed": ((b"POST",), _embed),
}


def answer(state: State, method: bytes, path: bytes, body: bytes) -> Answer:
    route = ROUTES.get(path)
    if route is None:
        return 404, b"text/plain", b"404 page not found"
    methods, run = route
    if method not in methods:
        return 405, b"text/plain", b"405 method not allowed"
    try:
        return run(state, body)
    except Refused as refused:
        return refused.status, _JSON, _dumpb({"error": refused.message})


# --- the connection ----------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One client connection: requests in order, each answered whole or streamed line by line."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.waiting: deque[tuple[bytes, bytes, bytes, bool]] = deque()  # pipelined behind a stream
        self.stream: Iterator[bytes] | None = None
        self.stream_keep_alive = True
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.state.transports.add(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net/http
            except OSError:
                pass
        # Pause as soon as the kernel's buffer is full: until then every line is its own send,
        # as Ollama flushes after every line.
        self.transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.state.transports.discard(self.transport)
        self.transport = None
        self.stream = None
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = (self.parser.get_method(), self.url, b"".join(self.body), self.parser.should_keep_alive())
        if self.stream is not None or self.waiting:
            self.waiting.append(request)
        else:
            self._answer(*request)

    # --- answering ---

    def _answer(self, method: bytes, url: bytes, body: bytes, keep: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        result = answer(self.state, method, url.partition(b"?")[0], body)
        date = self.state.clock.date()
        close = b"" if keep else b"Connection: close\r\n"
        if isinstance(result, tuple):  # headers in Go's order: sorted by name
            status, content_type, data = result
            head = b"HTTP/1.1 %b\r\n%b" % (_STATUS[status], close)
            tail = b"Content-Type: %b\r\nDate: %b\r\n" % (content_type, date)
            if method == b"HEAD":
                transport.write(head + b"Content-Length: %d\r\n%b\r\n" % (len(data), tail))
            elif len(data) < _CHUNKED_FROM:
                transport.write(head + b"Content-Length: %d\r\n%b\r\n%b" % (len(data), tail, data))
            else:
                transport.write(
                    head + tail + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)
                )
            self._next(keep)
            return
        first = next(result)  # the headers go with the first line, as Go's first flush sends them
        transport.write(
            b"HTTP/1.1 200 OK\r\n%bContent-Type: application/x-ndjson\r\nDate: %b\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%b\r\n" % (close, date, len(first), first)
        )
        self.stream, self.stream_keep_alive = result, keep
        self._pump()

    def _pump(self) -> None:
        """Write the stream's next lines, one write each, until paused, a batch is done, or it ends."""
        lines, transport = self.stream, self.transport
        if lines is None or transport is None or self.paused:
            return
        write = transport.write
        for _ in range(_BATCH):
            line = next(lines, None)
            if line is None:
                write(b"0\r\n\r\n")
                self.stream = None
                self._next(self.stream_keep_alive)
                return
            write(b"%x\r\n%b\r\n" % (len(line), line))
            if self.paused:
                return
        self.loop.call_soon(self._pump)

    def _next(self, keep: bool) -> None:
        """After an answer: close if the client asked to, else answer what was pipelined behind it."""
        if not keep:
            if self.transport is not None:
                self.transport.close()
            self.waiting.clear()
        elif self.waiting:
            self._answer(*self.waiting.popleft())


class FastTarget:
    """The fast target in this event loop (tests); `python -m foreman simulate --fast` runs it alone."""

    def __init__(self, models: list[str] | None = None, default_tokens: int = 8, max_loaded: int = 3) -> None:
        self.state = State(models or list(DEFAULT_MODELS), default_tokens, max_loaded)
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self.state), host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}" if ":" not in bound[0] else f"http://[{bound[0]}]:{bound[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in list(self.state.transports):
                transport.close()  # Python 3.11's Server.close() leaves accepted connections open
            await self._server.wait_closed()
            await asyncio.sleep(0)  # let connection_lost run
            self._server = None
