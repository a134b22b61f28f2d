"""The inventory face: tags, ps, version, show, and model management (docs/contract.md section 3).

`/api/tags` comes from the poller (ADR 0006); `/api/ps` and `/api/version` are asked
live and fall back to the last known answer while the target is down; `/api/show` is
passed through. Management endpoints are refused unless `allow_model_management`.
"""

from __future__ import annotations

from foreman.config import Settings
from foreman.errors import BadGateway, Forbidden
from foreman.handlers.base import BaseHandler, BodyHandler
from foreman.poller import Poller, Snapshot
from foreman.proxy import proxy_request
from foreman.target import TargetClient, TargetError

_JSON = "application/json; charset=utf-8"


class ProxyHandler(BaseHandler):
    """Passes its requests to the target (`target`: the pool to use)."""

    def initialize(self, settings: Settings, target: TargetClient) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.target = target


class SnapshotHandler(BaseHandler):
    """Answers with a snapshot's bytes exactly as the target sent them."""

    def initialize(self, settings: Settings, poller: Poller) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.poller = poller

    def send_snapshot(self, snap: Snapshot, *, body: bool = True) -> None:
        self.set_header("Content-Type", _JSON)
        if body:
            self.finish(snap.raw)
        else:
            self.set_header("Content-Length", str(len(snap.raw)))
            self.finish()


class TagsHandler(SnapshotHandler):
    async def get(self) -> None:
        self.send_snapshot(await self._tags())

    async def head(self) -> None:
        self.send_snapshot(await self._tags(), body=False)

    async def _tags(self) -> Snapshot:
        poller = self.poller
        if poller.tags is None:
            await poller.poll()
        if poller.tags is None:
            raise BadGateway(poller.last_error or "the target has not answered yet")
        return poller.tags


class LiveHandler(SnapshotHandler):
    """Asked live; the last known answer while the target cannot be reached."""

    path = ""
    snapshot = ""  # the poller's attribute holding the last known answer

    def initialize(self, settings: Settings, poller: Poller, target: TargetClient) -> None:  # type: ignore[override]
        super().initialize(settings, poller)
        self.target = target

    def last_known(self) -> Snapshot | None:
        known: Snapshot | None = getattr(self.poller, self.snapshot)
        return known

    async def get(self) -> None:
        await self._answer(body=True)

    async def _answer(self, *, body: bool) -> None:
        try:
            status, headers, raw = await self.target.fetch("GET", self.path, timeout=10.0)
        except TargetError as exc:
            self.poller.report_down(str(exc))
            known = self.last_known()
            if known is None:
                raise BadGateway(str(exc)) from None
            self.send_snapshot(known, body=body)
            return
        if status == 200 and self.path == "/api/ps":
            self.poller.saw_ps(raw)
        self.set_status(status)
        for name, value in headers:
            self.set_header(name, value)
        if not body:  # HEAD: the length of the body a GET would get, as Go's server sends
            self.set_header("Content-Length", str(len(raw)))
        self.finish(raw if body else None)


class PsHandler(LiveHandler):
    path = "/api/ps"
    snapshot = "ps"


class VersionHandler(LiveHandler):
    path = "/api/version"
    snapshot = "version"

    async def head(self) -> None:
        await self._answer(body=False)


class ShowHandler(BodyHandler, ProxyHandler):
    async def post(self) -> None:
        await proxy_request(self, self.target, self.body)


class ManagementHandler(BodyHandler, ProxyHandler):
    """pull, push, create, copy, delete and blobs: only with `allow_model_management: true`."""

    def initialize(self, settings: Settings, target: TargetClient, poller: Poller) -> None:  # type: ignore[override]
        super().initialize(settings, target)
        self.poller = poller

    async def _pass(self) -> None:
        body = self.body  # also raises a refusal of the token
        if not self.config.allow_model_management:
            raise Forbidden(
                "model management is disabled on this foreman; set allow_model_management: true to allow "
                f"{self.request.method} {self.request.path}"
            )
        await proxy_request(self, self.target, body or None, stream=True, finish=False)
        # The inventory has changed, or may have: look again before the client hears the end.
        await self.poller.poll()
        if not self._finished:
            self.finish()

    async def post(self, *args: str) -> None:
        await self._pass()

    async def delete(self, *args: str) -> None:
        await self._pass()

    async def head(self, *args: str) -> None:
        await self._pass()


class PassThroughHandler(BodyHandler, ProxyHandler):
    """Every path foreman does not serve itself (docs/adr/0027): to the target as it came,
    with any method, unqueued; the answer streams back as the target sends it."""

    async def _pass(self, *args: str) -> None:
        await proxy_request(self, self.target, self.body or None, stream=True)

    get = post = put = patch = delete = head = options = _pass
