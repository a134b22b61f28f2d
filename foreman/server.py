"""The daemon: builds store, target clients, poller, worker, webhook deliverer and HTTP
server, wires each to the few others it uses, starts and stops them."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from foreman.app import Face, make_app
from foreman.caller import Callers
from foreman.config import Settings, redacted
from foreman.delivery import Deliverer
from foreman.embedder import Embedder
from foreman.events import build_event
from foreman.feed import Feed
from foreman.job_service import JobService
from foreman.job_views import JobViews
from foreman.lock import DatabaseLock
from foreman.metrics import LiveValues, Metrics
from foreman.poller import Poller
from foreman.recorder import Recorder
from foreman.store import Store
from foreman.sweeper import Sweeper
from foreman.target import TargetClient
from foreman.webhook_client import WebhookClient
from foreman.worker import Wakeup, Worker
from statemachine import Lifecycle

log = logging.getLogger(__name__)

# How long a stop waits for the running job to end before re-queuing it: under Docker's
# default 10 s between SIGTERM and SIGKILL (docs/adr/0015).
_GRACE = 8.0


class Daemon:
    """One running foreman. `await Daemon.start(settings)`, then `await daemon.stop()`.

    Its parts are attributes for the tests and the benchmark to look at; no part of
    foreman is handed the daemon.
    """

    def __init__(self, settings: Settings, store: Store, sockets: list[socket.socket], lock: DatabaseLock) -> None:
        self.settings = settings
        self.store = store
        self.sockets = sockets
        self.lock = lock
        self._stopped = False
        self.target, self.embed_target = (
            TargetClient(
                settings.ollama_url,
                first_byte_timeout=settings.first_byte_timeout,
                idle_timeout=settings.idle_timeout,
                pool_size=pool_size,
            )
            for pool_size in (8, 16)  # embeddings get a pool of their own (ADR 0013)
        )
        self.poller = Poller(self.target, settings.poll_interval)
        # A database file deleted or replaced under foreman is noticed within a poll interval.
        self.storage_watch = PeriodicCallback(store.db.health.check_file, settings.poll_interval * 1000)
        self.metrics = Metrics()
        self.webhooks = WebhookClient(
            allow=settings.webhook_allow,
            secret=settings.webhook_secret,
            own=[(str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in sockets],
            target_url=settings.ollama_url,
        )
        self.deliverer = Deliverer(settings, store.outbox, self.webhooks)
        wakeup = Wakeup()
        self.feed = Feed()
        self.recorder = Recorder(
            store.jobs,
            self.metrics,
            wake_worker=wakeup.poke,
            wake_deliverer=self.deliverer.wake,
            publish=self.feed.publish,
        )
        lifecycle = Lifecycle(self.recorder)
        callers = Callers()
        self.worker = Worker(
            settings,
            store.jobs,
            self.target,
            self.poller,
            lifecycle=lifecycle,
            callers=callers,
            wakeup=wakeup,
            metrics=self.metrics,
        )
        self.jobs = JobService(
            store.jobs,
            self.recorder,
            lifecycle,
            callers,
            self.metrics,
            offer=self.worker.offer,
            cancel_running=self.worker.cancel,
            max_queue=settings.max_queue,
        )
        self.views = JobViews(store.jobs, store.outbox, self.worker, settings.inline_artifact_max)
        self.embedder = Embedder(settings.embed_model, self.embed_target, self.poller)
        self.sweeper = Sweeper(store.outbox, settings.job_ttl)
        poller, worker, deliverer = self.poller, self.worker, self.deliverer
        self.metrics.watch(
            LiveValues(
                swaps=lambda: worker.swaps,
                poll_failures=lambda: poller.polls_failed,
                target_up=lambda: not poller.degraded,
                deliveries=lambda: (deliverer.delivered, deliverer.failed_attempts),
                storage_up=lambda: store.db.health.ok,
                queue_limit=lambda: settings.max_queue,
            )
        )
        self.face = Face(
            settings=settings,
            jobs=self.jobs,
            views=self.views,
            feed=self.feed,
            poller=self.poller,
            target=self.target,
            embed_target=self.embed_target,
            webhooks=self.webhooks,
            metrics=self.metrics,
            started_at=time.time(),
            listen_host=str(sockets[0].getsockname()[0]),
        )
        self.server = HTTPServer(
            make_app(self.face),
            max_body_size=settings.max_body + 1,  # handlers answer 413 themselves first
            idle_connection_timeout=300,  # Tornado's default is an hour
            body_timeout=300,
        )

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.settings.listen_host
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
            daemon = cls(settings, store, sockets, lock)
            await daemon.jobs.recover(settings.max_attempts)
        except BaseException:
            # Close what was opened, or the store's threads keep a failed process alive.
            if store is not None:
                await store.close()
            for sock in sockets:
                sock.close()
            raise
        daemon.server.add_sockets(sockets)
        daemon.poller.start()
        daemon.storage_watch.start()
        daemon.deliverer.start()
        daemon.sweeper.start()
        if run_worker:
            daemon.worker.start()
        log.info("foreman listening on %s, target %s", daemon.url, redacted(settings.ollama_url))
        return daemon

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.jobs.accepting = False
        self.server.stop()
        self.storage_watch.stop()
        await self.worker.stop(grace=_GRACE)
        self.feed.close()  # after the running job's last move: its watchers see it
        await self.poller.stop()
        await self.embedder.stop()
        await self.sweeper.stop()
        await self.deliverer.stop()
        await self.webhooks.close()
        try:
            async with asyncio.timeout(5):
                await self.server.close_all_connections()
        except TimeoutError:
            log.warning("some client connections did not close in time")
        await self.target.close()
        await self.embed_target.close()
        await self.store.close()
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
