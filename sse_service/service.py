"""The bridge as one object: every part built up front from ``Settings``, and their one lifetime.

``Service(settings)`` constructs the hub, the link to Home Assistant (the client itself, or in a
cluster the node that leads or follows), the access checks and every endpoint, each given what
it needs in its constructor. ``async with service.lifetime():`` runs the background tasks (the
upstream or the cluster, the heartbeat, the demo home, token revocations) and ends them.
``app.create_app`` only lays the endpoints out as routes; ``server.serve`` runs both.

A background task runs for as long as the service does. One that ends (an exception, or a
return) is a bug or a broken dependency: it is logged with its traceback, ``/readyz`` answers
503 from then on, and ``on_failure`` is called so that the server stops and the process exits
non-zero, for its supervisor to restart it. It is never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .access import Keys, RateLimiter, StreamLimits
from .api import StateRoutes
from .changelog import MemoryLog
from .commands import CommandEndpoint
from .config import Secret, Settings
from .filters import EntityPattern, FilterLimits
from .ha.client import HAClient, UpstreamSink
from .ha.demo import BatteryHome, DemoHomeAssistant
from .history import HistoryEndpoint
from .hub import Hub
from .metrics import Metrics
from .stream import EventsEndpoint
from .tokens import Revocations
from .types import UpstreamStatus
from .upstream import Upstream

if TYPE_CHECKING:
    from .cluster import ClusterNode

__all__ = ["NotReady", "Service"]

log = logging.getLogger("sse_service")


@dataclasses.dataclass(frozen=True)
class NotReady:
    """Why ``/readyz`` says no: a stable code, a readable message, when to ask again."""

    code: str
    message: str
    retry_after: int | None = 1


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        reload: Callable[[], Settings] | None = None,
        watch: Path | None = None,
        ingress: Secret | None = None,
    ) -> None:
        """``reload`` reads the settings again, for ``TOKEN_REVOKED`` on SIGHUP and whenever the
        file ``watch`` (the ``CONFIG_FILE``) changes. ``ingress``: the credential of requests
        through Home Assistant's Ingress (``Keys.ingress``)."""
        self.settings = settings
        self.hub = Hub(
            replay_size=settings.replay_buffer,
            heartbeat=settings.heartbeat,
            history_size=settings.history_points,
            history_window=settings.history_window,
        )
        self.exposed = EntityPattern(settings.entities)
        self.demo: DemoHomeAssistant | None = None
        if settings.ha_url is None or settings.ha_token is None:
            self.demo = DemoHomeAssistant()
            self.demo.bind()
        self.keys = Keys.from_settings(settings, ingress)
        self.limits = StreamLimits(settings.max_streams, settings.max_streams_per_ip)
        self.filter_limits = FilterLimits(settings.max_filter_patterns, settings.max_filter_length)

        # With REDIS_URL, one instance of the cluster holds the upstream; every hub follows its log.
        # Where the changes are numbered: alone, a log in memory; with REDIS_URL, the cluster's log
        # in Redis, which the member that leads writes (with its own client) and every hub follows.
        self.cluster: ClusterNode | None = None
        self.client: HAClient | None = None
        self.upstream: Upstream
        if settings.redis_url is not None:
            from .cluster import ClusterNode  # imports redis-py: only when it is needed

            self.cluster = ClusterNode(settings, self.hub, self.ha_client)
            self.upstream = self.cluster.upstream
        else:
            self.log = MemoryLog(self.hub.epoch, self.hub.apply)
            self.client = self.upstream = self.ha_client(self.log)

        self.events = EventsEndpoint(
            self.hub,
            retry_ms=settings.retry_ms,
            buffer_limit=settings.client_buffer_bytes,
            keys=self.keys,
            limits=self.limits,
            max_age=settings.max_stream_age,
            filter_limits=self.filter_limits,
            commands=bool(settings.services),
        )
        self.metrics = Metrics(
            self.hub,
            self.upstream,
            keys=self.keys,
            token_streams=self.events.token_streams if settings.token_secret is not None else None,
        )
        self.hub.on_fanout = self.metrics.fanout.observe
        if self.cluster is not None:
            self.metrics.registry.register(self.cluster.collector())
        local_rate = RateLimiter(settings.command_rate, settings.command_burst)
        self.commands = CommandEndpoint(
            settings,
            self.hub,
            self.upstream,
            keys=self.keys,
            # COMMAND_RATE holds for the cluster, not per instance.
            rate=local_rate if self.cluster is None else self.cluster.rate_limiter(local_rate),
            exposed=self.exposed,
            on_outcome=self.metrics.command,
        )
        self.history = HistoryEndpoint(
            self.upstream, self.hub, keys=self.keys, exposed=self.exposed, window=settings.history_window
        )
        self.states = StateRoutes(self.hub, keys=self.keys, filter_limits=self.filter_limits)
        self.revocations: Revocations | None = None
        if self.keys.tokens is not None:
            revoked: Callable[[], tuple[str, ...]] = lambda: (reload() if reload else settings).token_revoked  # noqa: E731
            self.revocations = Revocations(self.keys.tokens, revoked, on_change=self.events.revoke, watch=watch)
        self._watch = watch

        self.draining = False
        self.failure: str | None = None  # the background task that ended, and how
        self.on_failure: Callable[[], None] | None = None  # the server's stop, set by whoever runs it
        self._tasks: list[asyncio.Task[None]] = []

    def ha_client(self, sink: UpstreamSink) -> HAClient:
        """A client of the configured Home Assistant (or the demo) feeding ``sink``."""
        settings = self.settings
        if self.demo is not None:
            url, token = self.demo.url, self.demo.token
        else:
            assert settings.ha_url is not None and settings.ha_token is not None
            url, token = settings.ha_url, settings.ha_token.reveal()
        return HAClient(
            url,
            token,
            sink,
            exposed=self.exposed,
            ping_interval=settings.ha_ping_interval,
            pong_timeout=settings.ha_pong_timeout,
            connect_timeout=settings.ha_connect_timeout,
            backoff_max=settings.ha_backoff_max,
            auth_retry=settings.ha_auth_retry,
            use_proxy=self.demo is None,
            history_window=settings.history_window if settings.history_points else 0.0,
            history_entities=settings.history_entities,
        )

    # --- the one lifetime -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifetime(self) -> AsyncIterator[None]:
        """Run every background part until the block ends, then end them all."""
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._end_tasks)
            if self.demo is not None:
                await self.demo.start()
                stack.push_async_callback(self.demo.stop)
                self._spawn("demo-home", BatteryHome(self.demo, interval=settings.demo_interval).run())
                log.info("No HA_URL set: running the embedded demo Home Assistant on %s", self.demo.url)
            if settings.services and self.keys.open:
                services = ",".join(settings.services)
                log.warning("Commands (%s) are open to anyone who can reach this server: set WRITE_KEY", services)
            if self.cluster is not None:
                self._spawn("cluster", self.cluster.run())
            elif self.client is not None:
                self._spawn("upstream", self.client.run())
            self._spawn("heartbeat", self.hub.run_heartbeat(settings.heartbeat))
            if self.revocations is not None:
                if self._watch is None:
                    log.warning(
                        "TOKEN_SECRET is set without CONFIG_FILE: TOKEN_REVOKED is read once, at start "
                        "(SIGHUP reads the environment as it was then), so revoking a token needs a restart; "
                        "put TOKEN_REVOKED in a CONFIG_FILE to revoke while running"
                    )
                self._spawn("revocations", self.revocations.run())
            yield

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # the lifetime is over
        error = task.exception()
        if error is None:
            log.error("Background task %s returned, which it never should; stopping", task.get_name())
            self.failure = f"the background task {task.get_name()} ended"
        else:
            log.error("Background task %s crashed; stopping", task.get_name(), exc_info=error)
            self.failure = f"the background task {task.get_name()} crashed ({type(error).__name__})"
        if self.on_failure is not None:
            self.on_failure()

    async def _end_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Their errors are logged by _ended as they happen; here they only need to be over.
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- what the health routes and the server ask ---------------------------------------

    def not_ready(self) -> NotReady | None:
        """None when this instance should get traffic; else why not (``/readyz``)."""
        hub = self.hub
        if self.failure is not None:
            return NotReady("task_failed", f"{self.failure}; the process is ending", None)
        if self.draining:
            return NotReady("shutting_down", "this instance is shutting down", None)
        if self.cluster is not None and not self.cluster.redis_ok:
            error = self.cluster.describe()["redis_error"] or "not connected yet"
            return NotReady("redis_unavailable", f"Redis is unreachable ({error})")
        if not hub.ready:
            if hub.status is UpstreamStatus.STARTING:
                message = f"{hub.status_reason}: waiting until it runs for the first full view of its entities"
            else:
                message = f"waiting for the first snapshot from Home Assistant (upstream: {hub.status.value})"
            return NotReady("not_ready", message)
        return None

    def health(self) -> dict[str, Any]:
        """Liveness (``/healthz``): what the process knows, whether or not Home Assistant is up."""
        hub = self.hub
        body: dict[str, Any] = {
            "status": "ok",
            "upstream": {
                "status": hub.status.value,
                "reason": hub.status_reason,
                "cause": hub.status_cause.value,
                "since": hub.status_since,
                "ha_version": self.upstream.ha_version,
                "demo": self.settings.demo,
            },
            "clients": hub.client_count,
            "entities": len(hub.store),
            "event_id": hub.event_id(),
        }
        if self.failure is not None:
            body["failure"] = self.failure
        if self.cluster is not None:
            body["cluster"] = self.cluster.describe()
        return body

    async def drain(self, grace: float) -> int:
        """End every stream, telling clients to come back soon (to the next instance).

        Returns how many streams are still open after ``grace`` seconds.
        """
        self.draining = True
        self.hub.close_all(min(self.settings.retry_ms, 1000))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.hub.wait_until_empty()
        return self.hub.client_count
