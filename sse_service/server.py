"""Running the app under uvicorn: our own listening socket and a graceful drain of the streams."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import Settings
from .service import Service

__all__ = ["Server", "listening_socket", "serve", "uvicorn_config"]

log = logging.getLogger("sse_service")

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux


class Server(uvicorn.Server):
    """uvicorn, plus a drain of the event streams when it shuts down.

    uvicorn waits for open responses to finish before the lifespan shutdown, and an event
    stream never finishes by itself. So: stop accepting, end every stream with a short
    ``retry:`` (browsers go to the next instance at once), wait for them to go, and abort
    the connections of clients too stalled to take their last bytes, rather than let
    uvicorn cancel their tasks at the graceful timeout.
    """

    def __init__(self, config: uvicorn.Config, drain: Callable[[float], Awaitable[int]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        stuck = await self._drain(float(self.config.timeout_graceful_shutdown or 0))
        if stuck:
            log.warning("%d stream(s) did not drain in time; closing their connections", stuck)
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    connection.transport.abort()
        await super().shutdown(sockets)


class _RequestDeadline:
    """A connection must send a whole request line and headers within ``request_timeout``.

    uvicorn times out an idle keep-alive connection, but not one that has sent part of a
    request (or nothing at all): such half-open connections stayed open for good, and are
    not counted by ``MAX_STREAMS``. The deadline is one timer handle, armed when a
    connection opens and when bytes arrive between requests, dropped when the headers are
    complete: an open stream holds none. After a response, bytes that are still coming (a
    body nobody reads) must end in a new request within the same time. A command's body is
    timed by the route itself (408, commands.py).
    """

    request_timeout = 10.0
    # A class default, so a connection pays for the handle only while it is armed.
    _deadline: asyncio.TimerHandle | None = None
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _arm_between_requests(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("Closing a connection that sent no complete request within %g s", self.request_timeout)
            self.transport.close()


class _LeanEvent(asyncio.Event):
    """``asyncio.Event`` with its waiters in a list: an empty deque is 760 bytes (its first block
    of 64 slots comes with it), an empty list 56, and these events seldom have more than one waiter.

    uvicorn makes two per connection that live as long as a stream: the request's
    ``message_event`` (what ``receive()`` waits on) and flow control's. Event itself only
    appends to, removes from and iterates over ``_waiters``, all of which a list does as well.
    """

    def __init__(self, is_set: bool = False) -> None:  # not super's: that would make the deque
        self._waiters = []  # type: ignore[assignment]
        self._value = is_set


class _Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests (``appendleft``, ``pop``, truth), as a list: 56 bytes
    against an empty deque's 760, held by every connection while browsers never pipeline."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class _Lean:
    """What uvicorn keeps for a connection for as long as its stream lasts, made smaller in place
    (bench/memory.py measures it): the two events and the pipeline queue above."""

    flow: Any
    cycle: Any

    def _lean_connection(self) -> None:
        self.flow._is_writable_event = _LeanEvent(self.flow._is_writable_event.is_set())

    def _lean_cycle(self, previous: Any) -> None:
        """After a new request's cycle was made and before its task first runs (nothing waits yet);
        the event may already be set (the whole request came in one read)."""
        cycle = self.cycle
        if cycle is not previous and cycle is not None and type(cycle.message_event) is asyncio.Event:
            cycle.message_event = _LeanEvent(cycle.message_event.is_set())


class _H11(_RequestDeadline, _Lean, H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lean_connection()
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._arm_between_requests()
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # h11 parsed a new request's headers
            self._disarm()

    def handle_events(self) -> None:
        # Here, not in data_received: a pipelined request's cycle is made when the one before ends.
        cycle = self.cycle
        super().handle_events()
        self._lean_cycle(cycle)

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


_HTTP: type[_RequestDeadline] = _H11
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn's "auto" takes h11, and so do we
    pass
else:

    class _HttpTools(_RequestDeadline, _Lean, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._lean_connection()
            self.pipeline = _Pipeline()  # type: ignore[assignment]
            self._arm()

        def data_received(self, data: bytes) -> None:
            self._arm_between_requests()
            super().data_received(data)

        def on_message_begin(self) -> None:
            self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._disarm()
            cycle = self.cycle
            super().on_headers_complete()
            self._lean_cycle(cycle)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    _HTTP = _HttpTools


def _protocol(request_timeout: float) -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn's "auto" would pick (httptools, else h11), with the request deadline."""
    return cast(type[asyncio.Protocol], type(_HTTP.__name__, (_HTTP,), {"request_timeout": request_timeout}))


def listening_socket(host: str, port: int, *, user_timeout: float | None = 30.0) -> socket.socket:
    """A listening socket whose connections the kernel drops when a client stops acknowledging data.

    ``TCP_USER_TIMEOUT`` is inherited by every accepted connection: a peer that vanished
    (Wi-Fi off, laptop asleep) or stopped reading for that long is cut by the kernel, and
    the stream ends like any disconnect. Heartbeats make sure there is data to acknowledge.
    """
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if user_timeout and hasattr(socket, "IPPROTO_TCP"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, int(user_timeout * 1000))
        except OSError:  # not Linux: rely on heartbeats and the OS's own timeouts
            log.debug("TCP_USER_TIMEOUT not supported here")
    sock.bind(address)
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout)),
        lifespan="on",
        # The app reads forwarded headers itself (proxy.py) and writes its own access log
        # (logs.py): uvicorn's would trust X-Forwarded-For's left-most, client-written
        # entry, and print query strings that may hold a key.
        proxy_headers=False,
        access_log=False,
        server_header=False,
        http=_protocol(settings.request_timeout),
        interface="asgi3",  # the app's __call__ is not a coroutine function (app.py), which uvicorn's guess looks for
    )


def serve(service: Service, app: Starlette, *, also: socket.socket | None = None) -> int:
    """Run until SIGTERM (0) or until a background part of the service fails (1, for a supervisor).

    ``also``: a second listening socket served by the same app (the add-on's ingress port).
    """
    settings = service.settings
    server = Server(uvicorn_config(app, settings), drain=service.drain)

    def stop() -> None:
        server.should_exit = True

    service.on_failure = stop
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as e:
        # The first thing a second copy, or a busy dev machine, runs into: one line and the setting to change.
        print(f"sse-service: {cannot_listen(settings.host, settings.port, e)}", file=sys.stderr)
        return 1
    log.info("%s", where_to_look(settings, sock.getsockname()[1]))
    server.run(sockets=[sock] if also is None else [sock, also])
    return 1 if service.failure is not None else 0


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """Why the service cannot listen, in one line that names the setting to change."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use; choose another with PORT=… or --port …"
    if error.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges this user lacks; choose one above 1023 with PORT=… or --port …"
    if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return f"cannot listen on {host}: not an address of this machine; set HOST=… or --host … (127.0.0.1, 0.0.0.0)"
    return f"cannot listen on {host} port {port}: {error.strerror or error}"


def where_to_look(settings: Settings, port: int) -> str:
    """The first line a new user needs: where to point a browser, and what it will show."""
    if settings.host in ("0.0.0.0", "::", ""):
        url = f"http://<this machine's address>:{port}/ (listening on all interfaces)"
    else:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        url = f"http://{host}:{port}/"
    source = "the embedded demo Home Assistant (no HA_URL set)" if settings.demo else "Home Assistant"
    return f"Open {url} for the live page of {source}; the stream is at /events"
