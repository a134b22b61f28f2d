"""The inventory face: tags, ps, version, show, and model management (CONTRACT section 3).

`/api/tags` comes from the poller (ADR 0006); `/api/ps` and `/api/version` are asked
live and fall back to the last known answer while the target is down; `/api/show` is
passed through. Management endpoints are refused unless `allow_model_management`.
"""

from __future__ import annotations

from foreman.errors import BadGateway, Forbidden
from foreman.handlers.base import BaseHandler, BodyHandler
from foreman.passthrough import relay
from foreman.poller import Snapshot
from foreman.target import TargetError

_JSON = "application/json; charset=utf-8"


class SnapshotHandler(BaseHandler):
    """Answers with a snapshot's bytes exactly as the target sent them."""

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
        poller = self.services.poller
        if poller.tags is None:
            await poller.poll()
        if poller.tags is None:
            raise BadGateway(poller.last_error or "the target has not answered yet")
        return poller.tags


class LiveHandler(SnapshotHandler):
    """Asked live; the last known answer while the target cannot be reached."""

    path = ""
    snapshot = ""  # the poller's attribute holding the last known answer

    def last_known(self) -> Snapshot | None:
        known: Snapshot | None = getattr(self.services.poller, self.snapshot)
        return known

    async def get(self) -> None:
        await self._answer(body=True)

    async def _answer(self, *, body: bool) -> None:
        try:
            status, headers, raw = await self.services.target.fetch("GET", self.path, timeout=10.0)
        except TargetError as exc:
            self.services.poller.report_down(str(exc))
            known = self.last_known()
            if known is None:
                raise BadGateway(str(exc)) from None
            self.send_snapshot(known, body=body)
            return
        if status == 200 and self.path == "/api/ps":
            self.services.poller.saw_ps(raw)
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


class ShowHandler(BodyHandler):
    async def post(self) -> None:
        await relay(self, self.services.target, self.body)


class ManagementHandler(BodyHandler):
    """pull, push, create, copy, delete and blobs: only with `allow_model_management: true`."""

    async def _pass(self) -> None:
        body = self.body  # also raises a refusal of the token
        if not self.services.settings.allow_model_management:
            raise Forbidden(
                "model management is disabled on this foreman; set allow_model_management: true to allow "
                f"{self.request.method} {self.request.path}"
            )
        await relay(self, self.services.target, body or None, stream=True, finish=False)
        # The inventory has changed, or may have: look again before the client hears the end.
        await self.services.poller.poll()
        if not self._finished:
            self.finish()

    async def post(self, *args: str) -> None:
        await self._pass()

    async def delete(self, *args: str) -> None:
        await self._pass()

    async def head(self, *args: str) -> None:
        await self._pass()
