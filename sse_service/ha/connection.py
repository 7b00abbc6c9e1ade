"""One WebSocket connection to Home Assistant: open, authenticate, number commands, read.

The handshake is ``auth_required`` -> ``auth`` -> ``auth_ok``/``auth_invalid``. After it every
command gets the next id (HA rejects an id not above the last one it handled: ``id_reuse``,
§3.1), and what HA sends back, one message or a coalesced array of them (§2), goes to the
request waiting for it or to the handler registered with the command (a subscription's
events). Pending requests fail with :class:`NotConnected` as soon as the connection is gone.

The read loop only parses and hands messages on, and handlers must not block: HA drops a
client whose queue of pending messages grows past 4096 (protocol notes §6.1).

How real HA releases go away (``shared/docs/real-ha-testing.md``): 2024.3 sends
``homeassistant_stop`` (to admins that subscribed) and drops TCP without a close frame;
2025.4 sends a close frame at once but ends TCP only ~10 s later. The stop event
(:meth:`Connection.watch_for_shutdown`) and the close frame (:class:`_ClosingConnection`) each
end the session at once: no command goes out into a connection that is going away, and
clients learn of the outage when it starts.

A little over 300 lines: the error vocabulary and the descriptions of how a connection ended
stay with the code that raises them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from .. import __version__
from ..backoff import Fatal
from ..upstream import HAError, NotConnected
from . import messages
from .messages import Message, ProtocolError

__all__ = [
    "ENDINGS",
    "AuthInvalid",
    "Connection",
    "Goodbye",
    "HAError",
    "NotConnected",
    "describe_close",
    "describe_error",
    "display_url",
    "open_socket",
]

log = logging.getLogger("sse_service.upstream")

# Frames past this size are parsed in a worker thread: a day of history for many entities
# is megabytes of JSON, tens of milliseconds that every stream would otherwise wait.
LARGE_FRAME = 256 * 1024

Build = Callable[[int], Message]
Handler = Callable[[Message], Awaitable[None]]


class AuthInvalid(Fatal):
    """HA refused the token. Retrying quickly would raise notifications in HA and may ban our IP."""


class Goodbye(Exception):
    """HA announced its shutdown (``homeassistant_stop``): the session ends now."""


# How a connection ends in the ordinary way, besides OSError: retried on the reconnect
# schedule (``backoff.is_transient``). InvalidURI is among them as it always was here.
ENDINGS: tuple[type[Exception], ...] = (ConnectionClosed, InvalidHandshake, InvalidURI, ProtocolError, Goodbye)


class _ClosingConnection(ClientConnection):
    """A WebSocket client connection that ends as soon as the server's close frame is in.

    websockets' client waits for the server to end TCP after the close handshake, as the RFC
    says; HA 2025.4 does so only ~10 s after its close frame. Our reply is already written
    when the frame is processed, so the handshake is complete and closing TCP here is safe.
    """

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
            self.transport.close()


async def open_socket(url: str, *, connect_timeout: float, use_proxy: bool = True) -> Connection:
    """Open the WebSocket (not yet authenticated). Raises OSError, TimeoutError, InvalidHandshake, InvalidURI."""
    async with asyncio.timeout(connect_timeout):
        ws = await connect(
            url,
            max_size=None,  # get_states-sized snapshots pass 1 MiB on big installs
            open_timeout=None,  # the timeout above covers it
            close_timeout=2,
            proxy=True if use_proxy else None,
            user_agent_header=f"sse_service/{__version__}",
            create_connection=_ClosingConnection,
        )
    return Connection(ws)


class Connection:
    """State of one WebSocket connection; thrown away when it closes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.greeted = False  # HA's auth_required came (and with it its version)
        self.ha_version: str | None = None
        self.open = True  # until the read loop ends
        self.last_id = 0
        self.pending: dict[int, asyncio.Future[Message]] = {}
        self._send_lock = asyncio.Lock()
        self._handlers: dict[int, tuple[Handler, bool]] = {}  # id -> (handler, is a subscription)

    async def authenticate(self, token: str) -> None:
        """The handshake. Raises AuthInvalid, ProtocolError or ConnectionClosed."""
        first = messages.parse_frame(await self.ws.recv())[0]
        if first["type"] != "auth_required":
            raise ProtocolError(f"expected auth_required, got {first['type']!r}")
        self.greeted = True
        self.ha_version = str(first.get("ha_version") or "") or None
        await self.ws.send(_dumps(messages.auth(token)))
        reply = messages.parse_frame(await self.ws.recv())[0]
        if reply["type"] == "auth_invalid":
            raise AuthInvalid(str(reply.get("message") or "invalid access token"))
        if reply["type"] != "auth_ok":
            raise ProtocolError(f"expected auth_ok, got {reply['type']!r}")

    async def send(self, build: Build, handler: Handler | None = None, *, subscription: bool = False) -> int:
        """Send one command; ``handler`` gets its result (and, for a subscription, its events).

        A subscription's handler stays for its events unless HA refused it; any other handler
        is dropped once the result is in. Raises NotConnected if the connection is closing.
        """
        return await self._send(build, handler=handler, subscription=subscription)

    async def request(self, build: Build) -> Any:
        """Send one command and return HA's ``result``. Raises NotConnected or HAError."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        msg_id = await self._send(build, future=future)
        try:
            reply = await future
        finally:
            self.pending.pop(msg_id, None)
            if not future.done():
                future.cancel()
        if not reply.get("success"):
            error = reply.get("error") or {}
            raise HAError(
                str(error.get("code", "unknown_error")),
                str(error.get("message", "")),
                {k: v for k, v in error.items() if k.startswith("translation_")},
            )
        return reply.get("result")

    async def _send(
        self,
        build: Build,
        *,
        future: asyncio.Future[Message] | None = None,
        handler: Handler | None = None,
        subscription: bool = False,
    ) -> int:
        # Taking the id and writing the frame happen under one lock (id_reuse, above).
        async with self._send_lock:
            msg_id = self.last_id + 1
            # Built before anything is registered: a message that cannot be built (a time out of
            # range, a NaN) raises here and leaves no pending call behind.
            text = _dumps(build(msg_id))
            self.last_id = msg_id
            if future is not None:
                self.pending[msg_id] = future
            if handler is not None:
                self._handlers[msg_id] = (handler, subscription)
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                # The connection is going away: the caller gets NotConnected, and the
                # future is nobody's to await any more.
                self._handlers.pop(msg_id, None)
                if future is not None:
                    self.pending.pop(msg_id, None)
                    future.cancel()
                raise NotConnected("the connection to Home Assistant is closing") from None
        return msg_id

    async def watch_for_shutdown(self) -> None:
        """Hear HA announce its shutdown, where the token may (admins; others get "unauthorized", so ask first)."""
        await self.send(lambda i: messages.simple(i, "auth/current_user"), self._on_user)

    async def _on_user(self, message: Message) -> None:
        result = message.get("result") if message.get("success") else None
        if isinstance(result, dict) and result.get("is_admin") is True:
            await self.send(lambda i: messages.subscribe_events(i, "homeassistant_stop"), _on_stop, subscription=True)

    async def keep_alive(self, interval: float, pong_timeout: float, on_rtt: Callable[[float], None]) -> None:
        """Ping every ``interval``; without a pong in ``pong_timeout`` the connection is dropped."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed, NotConnected):  # the read loop sees the close too
            while True:
                await asyncio.sleep(interval)
                future: asyncio.Future[Message] = loop.create_future()
                started = loop.time()
                msg_id = await self._send(messages.ping, future=future)
                try:
                    async with asyncio.timeout(pong_timeout):
                        await future
                except TimeoutError:
                    log.warning("No pong from Home Assistant within %.1f s; reconnecting", pong_timeout)
                    # Closing ends the read loop, which ends this session.
                    self.ws.transport.abort()
                    return
                finally:
                    self.pending.pop(msg_id, None)
                on_rtt(loop.time() - started)

    async def read(self) -> None:
        """Read and dispatch until the connection ends; the exception says how it ended."""
        # recv(), not ``async for``: that ends quietly on a clean close, and the close code
        # is what tells a user why the connection ended.
        try:
            while True:
                frame = await self.ws.recv()
                if len(frame) > LARGE_FRAME:
                    parsed = await asyncio.to_thread(messages.parse_frame, frame)
                else:
                    parsed = messages.parse_frame(frame)
                for message in parsed:
                    await self._dispatch(message)
        except BaseException as e:
            self.open = False
            self._fail_pending(e)
            raise

    async def _dispatch(self, message: Message) -> None:
        kind = message["type"]
        msg_id = message.get("id")
        if kind in ("result", "pong") and isinstance(msg_id, int):
            future = self.pending.get(msg_id)
            if future is not None:
                if not future.done():
                    future.set_result(message)
                return
        entry = self._handlers.get(msg_id) if isinstance(msg_id, int) else None
        if entry is None or not isinstance(msg_id, int):
            if kind == "event":
                log.debug("Event for unknown subscription %r ignored", msg_id)
            return
        handler, subscription = entry
        if kind == "result" and not (subscription and message.get("success")):
            del self._handlers[msg_id]
        if kind in ("result", "event"):
            await handler(message)

    def _fail_pending(self, cause: BaseException | None = None) -> None:
        for future in self.pending.values():
            if not future.done():
                error = NotConnected("connection to Home Assistant lost")
                error.__cause__ = cause
                future.set_exception(error)

    async def close(self) -> None:
        """Fail what is still pending and close the socket."""
        self.open = False
        self._fail_pending()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def _on_stop(message: Message) -> None:
    if message["type"] == "event":
        raise Goodbye("Home Assistant is shutting down")


def _dumps(message: Message) -> str:
    # HA drops the whole connection on JSON it cannot parse, so NaN never goes out.
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def display_url(url: str) -> str:
    """The HA URL for logs and messages: no credentials, no query."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path.split('?', 1)[0]}"


def describe_close(e: ConnectionClosed) -> str:
    if e.rcvd is not None:
        return f"closed by Home Assistant (code {e.rcvd.code})"
    return "connection lost"


def describe_error(e: BaseException) -> str:
    if isinstance(e, ConnectionClosed):
        return describe_close(e)
    if isinstance(e, Goodbye):
        return str(e)
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, InvalidHandshake):
        return f"WebSocket handshake failed: {e}"
    if isinstance(e, ProtocolError):
        return f"protocol error: {e}"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return type(e).__name__
