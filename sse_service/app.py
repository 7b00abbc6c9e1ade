"""The app factory: routes, the static page, and one lifespan for the upstream connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from . import api, sse
from .access import Keys, RateLimiter, StreamLimits
from .commands import CommandEndpoint
from .config import Settings
from .filters import EntityPattern, FilterLimits
from .ha.client import HAClient, UpstreamSink
from .ha.demo import BatteryHome, DemoHomeAssistant
from .history import HistoryEndpoint
from .hub import Hub
from .logs import AccessLogMiddleware
from .metrics import Metrics
from .proxy import ProxyHeadersMiddleware, TrustedProxies
from .stream import EventsEndpoint
from .tokens import Revocations
from .types import UpstreamStatus
from .untrusted import loggable

__all__ = ["WEB_DIR", "create_app"]

log = logging.getLogger("sse_service")


def find_web_dir(package: Path, prefix: Path) -> Path:
    """The page: web/ beside the package in a checkout, else where a wheel installs it (pyproject)."""
    checkout = package.parent / "web"
    installed = prefix / "share" / "sse_service" / "web"
    if (installed / "index.html").is_file() and not (checkout / "index.html").is_file():
        return installed
    return checkout


WEB_DIR = find_web_dir(Path(__file__).resolve().parent, Path(sys.prefix))
EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _App(Starlette):
    """Starlette, with ``/events`` taken ahead of its middleware stack.

    The stream is the hot path. Through the stack, every layer (the error middleware, the
    exception middleware, the router) wraps ``send`` in a coroutine of its own for each write,
    and keeps a suspended frame alive under every open stream. Taken here, the stream gets
    the server's own ``send`` and only what it needs: forwarded headers and CORS. Measured
    with ``bench/run.py --scenarios fanout,idle`` (A-B-B-A): 10-15 % less CPU per delivery at
    1000 clients, and 11.6 KiB per idle stream instead of 14.8. The endpoint answers its own
    errors (405, 401, caps, 500).
    """

    def __init__(self, *, events: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) == "/events":
            await self._events(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path without the ``root_path`` a proxy may have put in front (as Starlette's router sees it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def create_app(
    settings: Settings,
    *,
    web_dir: Path | None = WEB_DIR,
    reload: Callable[[], Settings] | None = None,
    watch: Path | None = None,
) -> Starlette:
    """Build the ASGI app. Nothing global: several apps can run side by side (the tests do).

    ``reload`` reads the settings again, for ``TOKEN_REVOKED`` on SIGHUP and whenever the file
    ``watch`` (the ``CONFIG_FILE``) changes.
    """
    hub = Hub(
        replay_size=settings.replay_buffer,
        heartbeat=settings.heartbeat,
        history_size=settings.history_points,
        history_window=settings.history_window,
    )
    exposed = EntityPattern(settings.entities)
    demo = DemoHomeAssistant() if settings.ha_url is None or settings.ha_token is None else None

    def connect_upstream(sink: UpstreamSink = hub) -> HAClient:
        if demo is not None:
            url, token = demo.url, demo.token  # known once the demo listens
        else:
            assert settings.ha_url is not None and settings.ha_token is not None
            url, token = settings.ha_url, settings.ha_token.reveal()
        return HAClient(
            url,
            token,
            sink,
            exposed=exposed,
            ping_interval=settings.ha_ping_interval,
            pong_timeout=settings.ha_pong_timeout,
            connect_timeout=settings.ha_connect_timeout,
            backoff_max=settings.ha_backoff_max,
            auth_retry=settings.ha_auth_retry,
            use_proxy=demo is None,
            history_window=settings.history_window if settings.history_points else 0.0,
            history_entities=settings.history_entities,
        )

    # With REDIS_URL, one instance of the cluster holds the upstream; every hub follows its log.
    node = None
    if settings.redis_url is not None:
        from .cluster import ClusterNode  # imports redis-py: only when it is needed

        node = ClusterNode(settings, hub, connect_upstream)

    keys = Keys.from_settings(settings)
    limits = StreamLimits(settings.max_streams, settings.max_streams_per_ip)
    filter_limits = FilterLimits(settings.max_filter_patterns, settings.max_filter_length)
    events = EventsEndpoint(
        hub,
        retry_ms=settings.retry_ms,
        buffer_limit=settings.client_buffer_bytes,
        keys=keys,
        limits=limits,
        max_age=settings.max_stream_age,
        filter_limits=filter_limits,
    )

    def upstream() -> HAClient:
        client: HAClient = app.state.upstream
        return client

    local_rate = RateLimiter(settings.command_rate, settings.command_burst)
    # COMMAND_RATE holds for the cluster, not per instance.
    rate = local_rate if node is None else node.rate_limiter(local_rate)
    commands = CommandEndpoint(
        settings,
        hub,
        upstream,
        keys=keys,
        rate=rate,
        exposed=exposed,
        on_outcome=lambda outcome, token_name: metrics.command(outcome, token_name),
    )
    history = HistoryEndpoint(upstream, exposed=exposed, window=settings.history_window)
    token_streams = events.token_streams if settings.token_secret is not None else None
    metrics = Metrics(hub, lambda: getattr(app.state, "upstream", None), token_streams=token_streams)
    hub.on_fanout = metrics.fanout.observe
    if node is not None:
        metrics.registry.register(node.collector())
    draining = False

    async def readyz(request: Request) -> Response:
        """Readiness: 503 until Home Assistant's first snapshot is in, and while shutting down."""
        if draining:
            return api.error_response(503, "shutting_down", "this instance is shutting down")
        if node is not None and not node.redis_ok:
            message = f"Redis is unreachable ({node.describe()['redis_error'] or 'not connected yet'})"
            return api.error_response(503, "redis_unavailable", message, {"retry-after": "1"})
        if not hub.ready:
            if hub.status is UpstreamStatus.STARTING:
                message = f"{hub.status_reason}: waiting until it runs for the first full view of its entities"
            else:
                message = f"waiting for the first snapshot from Home Assistant (upstream: {hub.status.value})"
            return api.error_response(503, "not_ready", message, {"retry-after": "1"})
        return JSONResponse({"ready": True, "upstream": hub.status.value}, headers={"cache-control": "no-store"})

    async def health(request: Request) -> Response:
        response = await api.health(request)
        if node is None:
            return response
        body = json.loads(bytes(response.body))
        body["cluster"] = node.describe()
        return JSONResponse(body, headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if demo is not None:
            await demo.start()
            home = BatteryHome(demo, interval=settings.demo_interval)
            tasks.append(asyncio.create_task(home.run(), name="demo-home"))
            log.info("No HA_URL set: running the embedded demo Home Assistant on %s", demo.url)
        if settings.services and keys.open:
            log.warning(
                "Commands (%s) are open to anyone who can reach this server: set WRITE_KEY", ",".join(settings.services)
            )
        if node is None:
            upstream = app.state.upstream = connect_upstream()
            tasks.append(asyncio.create_task(upstream.run(), name="upstream"))
        else:
            app.state.upstream = node.upstream
            tasks.append(asyncio.create_task(node.run(), name="cluster"))
        tasks.append(asyncio.create_task(hub.run_heartbeat(settings.heartbeat), name="heartbeat"))
        if keys.tokens is not None:
            if watch is None:
                log.warning(
                    "TOKEN_SECRET is set without CONFIG_FILE: TOKEN_REVOKED is read once, at start "
                    "(SIGHUP reads the environment as it was then), so revoking a token needs a restart; "
                    "put TOKEN_REVOKED in a CONFIG_FILE to revoke while running"
                )
            revoked: Callable[[], tuple[str, ...]] = lambda: (reload() if reload else settings).token_revoked  # noqa: E731
            app.state.revocations = Revocations(keys.tokens, revoked, on_change=events.revoke, watch=watch)
            tasks.append(asyncio.create_task(app.state.revocations.run(), name="revocations"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if demo is not None:
                await demo.stop()

    routes: list[Route | Mount] = [
        Route("/events", events),  # reached only by what _App does not take first (e.g. "/events/")
        Route("/api/states", api.states, methods=["GET"]),
        Route("/api/states/{entity_id:str}", api.single_state, methods=["GET"]),
        Route("/api/history/{entity_id:str}", history.handle, methods=["GET"]),
        # Every method: the endpoint answers anything but POST with 405 and Allow (a Mount of
        # the page at "/" would otherwise take a GET and answer 404).
        Route("/api/services/{domain:str}/{service:str}", commands.handle, methods=EVERY_METHOD),
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
    ]
    if web_dir is not None and web_dir.is_dir():
        routes.append(Mount("/", StaticFiles(directory=web_dir, html=True), name="web"))

    async def not_found(request: Request, exc: Exception) -> Response:
        return api.error_response(404, "not_found", f"no route {request.url.path}")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return api.error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("Unhandled error on %s %s", loggable(request.method, 20), loggable(request.url.path), exc_info=exc)
        return api.error_response(500, "internal_error", "internal error; the details are in the server log")

    trusted = TrustedProxies(settings.forwarded_allow_ips)
    cors: dict[str, Any] = {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": ["GET", "HEAD", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "Last-Event-ID"],
        "allow_credentials": settings.cors_credentials,
        "max_age": 600,
    }
    middleware = [Middleware(ProxyHeadersMiddleware, trusted=trusted)]
    if settings.access_log:
        middleware.append(Middleware(AccessLogMiddleware))
    if settings.cors_origins:
        middleware.append(Middleware(CORSMiddleware, **cors))
    # /events, ahead of the stack: the same forwarded headers and CORS, nothing else.
    events_app: ASGIApp = CORSMiddleware(events, **cors) if settings.cors_origins else events
    app = _App(
        events=ProxyHeadersMiddleware(events_app, trusted),
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.demo = demo
    app.state.keys = keys
    app.state.limits = limits
    app.state.filter_limits = filter_limits
    app.state.cluster = node

    async def drain(grace: float) -> int:
        """End every stream, telling clients to come back soon (to the next instance).

        Returns how many streams are still open after ``grace`` seconds.
        """
        nonlocal draining
        draining = True
        hub.close_all(sse.retry(min(settings.retry_ms, 1000)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await hub.wait_until_empty()
        return hub.client_count

    app.state.drain = drain
    return app
