"""The daemon: wires store, target client, poller, worker and HTTP server; starts and stops them."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from foreman.app import make_app
from foreman.config import Settings
from foreman.delivery import Deliverer
from foreman.embedder import Embedder
from foreman.events import build_event
from foreman.lock import DatabaseLock
from foreman.metrics import Metrics
from foreman.poller import Poller
from foreman.service import JobService
from foreman.services import Services
from foreman.store import Store
from foreman.sweeper import Sweeper
from foreman.target import TargetClient
from foreman.webhook_client import WebhookClient
from foreman.worker import Worker

log = logging.getLogger(__name__)

# How long a stop waits for the running job to end before re-queuing it: under Docker's
# default 10 s between SIGTERM and SIGKILL (docs/adr/0015).
_GRACE = 8.0


class Daemon:
    """One running foreman. `await Daemon.start(settings)`, then `await daemon.stop()`."""

    def __init__(
        self,
        services: Services,
        worker: Worker,
        server: HTTPServer,
        sockets: list[socket.socket],
        lock: DatabaseLock,
    ) -> None:
        self.lock = lock
        self.services = services
        self.worker = worker
        self.server = server
        self.sockets = sockets
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.services.settings.listen_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}"

    @classmethod
    async def start(cls, settings: Settings, *, run_worker: bool = True) -> Daemon:
        lock = DatabaseLock(settings.db_path)
        lock.acquire()  # raises DatabaseBusy: one foreman per database
        try:
            return await cls._start(settings, lock, run_worker)
        except BaseException:
            lock.release()
            raise

    @classmethod
    async def _start(cls, settings: Settings, lock: DatabaseLock, run_worker: bool) -> Daemon:
        # The port first: a busy one fails before any thread or connection exists.
        sockets = bind_sockets(settings.listen_port, settings.listen_host or None, family=socket.AF_UNSPEC)
        store: Store | None = None
        try:
            store = await Store.open(settings.db_path, build_event)
            return await cls._assemble(settings, lock, run_worker, store, sockets)
        except BaseException:
            # Close what was opened, or the store's threads keep a failed process alive.
            if store is not None:
                await store.close()
            for sock in sockets:
                sock.close()
            raise

    @classmethod
    async def _assemble(
        cls, settings: Settings, lock: DatabaseLock, run_worker: bool, store: Store, sockets: list[socket.socket]
    ) -> Daemon:
        target, embed_target = (
            TargetClient(
                settings.ollama_url,
                first_byte_timeout=settings.first_byte_timeout,
                idle_timeout=settings.idle_timeout,
                pool_size=pool_size,
            )
            for pool_size in (8, 16)  # embeddings get a pool of their own (ADR 0013)
        )
        poller = Poller(target, settings.poll_interval)
        metrics = Metrics()
        jobs = JobService(store, metrics)
        worker = Worker(settings, jobs, target, poller)
        webhooks = WebhookClient(allow=settings.webhook_allow, secret=settings.webhook_secret)
        deliverer = Deliverer(settings, store, webhooks)
        jobs.attach_deliverer(deliverer.wake)
        services = Services(
            settings=settings,
            store=store,
            jobs=jobs,
            target=target,
            embed_target=embed_target,
            poller=poller,
            embedder=Embedder(settings.embed_model, embed_target, poller),
            worker=worker,
            webhooks=webhooks,
            deliverer=deliverer,
            sweeper=Sweeper(store, settings.job_ttl),
            metrics=metrics,
            started_at=time.time(),
        )
        metrics.bind(services)
        await jobs.recover(settings.max_attempts)
        server = HTTPServer(
            make_app(services),
            max_body_size=settings.max_body + 1,  # handlers answer 413 themselves first
            idle_connection_timeout=300,  # Tornado's default is an hour
            body_timeout=300,
        )
        server.add_sockets(sockets)
        poller.start()
        deliverer.start()
        services.sweeper.start()
        if run_worker:
            worker.start()
        daemon = cls(services, worker, server, sockets, lock)
        log.info("foreman listening on %s, target %s", daemon.url, settings.ollama_url)
        return daemon

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.services.jobs.accepting = False
        self.server.stop()
        await self.worker.stop(grace=_GRACE)
        await self.services.poller.stop()
        await self.services.embedder.stop()
        await self.services.sweeper.stop()
        await self.services.deliverer.stop()
        await self.services.webhooks.close()
        try:
            async with asyncio.timeout(5):
                await self.server.close_all_connections()
        except TimeoutError:
            log.warning("some client connections did not close in time")
        await self.services.target.close()
        await self.services.embed_target.close()
        await self.services.store.close()
        self.lock.release()
        log.info("foreman stopped")


async def run_until_signalled(settings: Settings) -> None:
    daemon = await Daemon.start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await daemon.stop()
