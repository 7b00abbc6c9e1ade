"""The one connection to Home Assistant.

Handshake (``auth_required`` -> ``auth`` -> ``auth_ok``/``auth_invalid``), coalesced frames,
one ``subscribe_entities`` subscription whose first event is an authoritative snapshot,
an application-level ping, and reconnects with capped exponential backoff plus jitter.

The read loop only parses and hands records to the sink, which must not block: HA drops a
client whose queue of pending messages grows past 4096 (protocol notes §6.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .. import __version__
from ..filters import EntityPattern
from ..types import EntityState, UpstreamStatus
from . import messages
from .messages import ProtocolError

__all__ = ["AuthInvalid", "HAClient", "HAError", "NotConnected", "UpstreamSink"]

log = logging.getLogger("sse_service.upstream")


class UpstreamSink(Protocol):
    """Where the client delivers what it learns. Called from the read loop: never block."""

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None: ...

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None: ...

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None: ...


class AuthInvalid(Exception):
    """HA refused the token. Retrying quickly would raise notifications in HA and may ban our IP."""


class NotConnected(Exception):
    """No authenticated connection to HA right now (or it dropped while a call was in flight)."""


class HAError(Exception):
    """HA answered a command with ``success: false``."""

    def __init__(self, code: str, message: str, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


class _Session:
    """State of one WebSocket connection; thrown away when it closes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0
        self.send_lock = asyncio.Lock()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.subscription_id: int | None = None
        self.snapshot_seen = False
        self.local_filter_only = False


class HAClient:
    """Keeps one authenticated connection to HA and feeds its entity states to a sink."""

    def __init__(
        self,
        url: str,
        token: str,
        sink: UpstreamSink,
        *,
        exposed: EntityPattern,
        ping_interval: float = 30.0,
        pong_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        backoff_max: float = 30.0,
        auth_retry: float = 300.0,
        use_proxy: bool = True,
    ) -> None:
        self._url = url
        self._token = token
        self._sink = sink
        self._exposed = exposed
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._connect_timeout = connect_timeout
        self._backoff_max = backoff_max
        self._auth_retry = auth_retry
        self._use_proxy = use_proxy
        self._states: dict[str, EntityState] = {}
        self._session: _Session | None = None
        self.status = UpstreamStatus.CONNECTING
        self.reason = "starting"
        self.ha_version: str | None = None
        self.connects = 0
        self.pong_rtt: float | None = None

    # --- public API -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.status is UpstreamStatus.CONNECTED and self._session is not None

    async def run(self) -> None:
        """Connect, and reconnect for ever; returns only when cancelled."""
        attempt = 0
        while True:
            authenticated = False
            try:
                authenticated = await self._connect_once()
                reason = "connection closed by Home Assistant"
            except AuthInvalid as e:
                self._set_status(UpstreamStatus.AUTH_INVALID, f"auth_invalid: {e}")
                log.error(
                    "Home Assistant refused the token (%s); next try in %.0f s. Check HA_TOKEN.", e, self._auth_retry
                )
                await asyncio.sleep(self._auth_retry)
                attempt = 0
                continue
            except ConnectionClosed as e:
                reason = _describe_close(e)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ProtocolError) as e:
                reason = _describe_error(e)
            if authenticated:
                attempt = 0
            self._set_status(UpstreamStatus.DISCONNECTED, reason)
            delay = self._backoff(attempt)
            attempt += 1
            log.warning("Upstream disconnected (%s); reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def call_service(
        self,
        domain: str,
        service: str,
        service_data: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call a service and return HA's ``result``. Raises NotConnected or HAError.

        HA sets no timeout on service calls (they block until the service is done), so the
        caller wraps this in its own ``asyncio.timeout``.
        """
        session = self._session
        if session is None or not self.connected:
            raise NotConnected("not connected to Home Assistant")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        msg_id = await self._send(
            session, lambda i: messages.call_service(i, domain, service, service_data, target), future
        )
        try:
            reply = await future
        finally:
            session.pending.pop(msg_id, None)
        if not reply.get("success"):
            error = reply.get("error") or {}
            raise HAError(
                str(error.get("code", "unknown_error")),
                str(error.get("message", "")),
                {k: v for k, v in error.items() if k.startswith("translation_")},
            )
        return reply.get("result")

    # --- one connection ---------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base = min(1.0, self._backoff_max)
        return min(self._backoff_max, base * 2.0**attempt) * random.uniform(0.5, 1.0)

    async def _connect_once(self) -> bool:
        """Run one connection to its end. Returns whether it got past auth."""
        async with asyncio.timeout(self._connect_timeout):
            ws = await connect(
                self._url,
                max_size=None,  # get_states-sized snapshots pass 1 MiB on big installs
                open_timeout=None,  # the timeout above covers it
                close_timeout=2,
                proxy=True if self._use_proxy else None,
                user_agent_header=f"sse_service/{__version__}",
            )
        session = _Session(ws)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._authenticate(ws)
            self.connects += 1
            log.info("Upstream authenticated (Home Assistant %s)", self.ha_version or "unknown version")
            self._session = session
            await self._send(session, messages.supported_features)
            await self._subscribe(session)
            pinger = asyncio.create_task(self._ping_loop(session), name="ha-ping")
            try:
                await self._read_loop(session)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
            return True
        finally:
            self._session = None
            for future in session.pending.values():
                if not future.done():
                    future.set_exception(NotConnected("connection to Home Assistant lost"))
            with contextlib.suppress(Exception):
                await ws.close()

    async def _authenticate(self, ws: ClientConnection) -> None:
        first = messages.parse_frame(await ws.recv())[0]
        if first["type"] != "auth_required":
            raise ProtocolError(f"expected auth_required, got {first['type']!r}")
        self.ha_version = str(first.get("ha_version") or "") or None
        await ws.send(_dumps(messages.auth(self._token)))
        reply = messages.parse_frame(await ws.recv())[0]
        if reply["type"] == "auth_invalid":
            raise AuthInvalid(str(reply.get("message") or "invalid access token"))
        if reply["type"] != "auth_ok":
            raise ProtocolError(f"expected auth_ok, got {reply['type']!r}")

    async def _subscribe(self, session: _Session, *, local_filter_only: bool = False) -> None:
        session.local_filter_only = local_filter_only
        session.snapshot_seen = False
        globs = None if (self._exposed.matches_all or local_filter_only) else self._exposed.globs
        session.subscription_id = await self._send(session, lambda i: messages.subscribe_entities(i, globs))

    async def _send(
        self,
        session: _Session,
        build: Callable[[int], dict[str, Any]],
        future: asyncio.Future[dict[str, Any]] | None = None,
    ) -> int:
        # HA rejects an id not above the last one it handled (id_reuse, §3.1), so taking the
        # id and writing the frame happen under one lock.
        async with session.send_lock:
            session.last_id += 1
            msg_id = session.last_id
            if future is not None:
                session.pending[msg_id] = future
            await session.ws.send(_dumps(build(msg_id)))
        return msg_id

    async def _ping_loop(self, session: _Session) -> None:
        try:
            await self._ping_forever(session)
        except ConnectionClosed:
            pass  # the read loop sees the close too and ends the session

    async def _ping_forever(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._ping_interval)
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            started = loop.time()
            msg_id = await self._send(session, messages.ping, future)
            try:
                async with asyncio.timeout(self._pong_timeout):
                    await future
            except TimeoutError:
                log.warning("No pong from Home Assistant within %.1f s; reconnecting", self._pong_timeout)
                # Closing ends the read loop, which ends this session.
                session.ws.transport.abort()
                return
            finally:
                session.pending.pop(msg_id, None)
            self.pong_rtt = loop.time() - started

    async def _read_loop(self, session: _Session) -> None:
        async for frame in session.ws:
            for message in messages.parse_frame(frame):
                await self._dispatch(session, message)

    async def _dispatch(self, session: _Session, message: dict[str, Any]) -> None:
        kind = message["type"]
        msg_id = message.get("id")
        if kind == "event" and msg_id == session.subscription_id:
            event = message.get("event")
            if not isinstance(event, dict):
                raise ProtocolError("entities event is not an object")
            self._on_entities_event(session, event)
        elif kind in ("result", "pong"):
            if kind == "result" and msg_id == session.subscription_id and not message.get("success"):
                await self._on_subscribe_failed(session, message)
                return
            future = session.pending.get(msg_id) if isinstance(msg_id, int) else None
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "event":
            log.debug("Event for unknown subscription %r ignored", msg_id)

    async def _on_subscribe_failed(self, session: _Session, message: dict[str, Any]) -> None:
        error = message.get("error") or {}
        if not session.local_filter_only:
            # HA before 2024.9 has no include filter on subscribe_entities: take every
            # entity and drop the ones that are not exposed here.
            log.warning("HA refused the filtered subscription (%s); filtering locally", error.get("message"))
            await self._subscribe(session, local_filter_only=True)
            return
        raise ProtocolError(f"subscribe_entities failed: {error.get('code')}: {error.get('message')}")

    def _on_entities_event(self, session: _Session, event: dict[str, Any]) -> None:
        exposed = self._exposed
        if not session.snapshot_seen:
            # The first event after (re)subscribing holds every state: it replaces what we
            # had, so entities removed while we were away disappear (cf. HA-js issue #769).
            session.snapshot_seen = True
            changes = messages.apply_entities_event({}, event)
            self._states = {k: v for k, v in changes.updated.items() if exposed(k)}
            self._sink.upstream_snapshot(dict(self._states))
            self._set_status(UpstreamStatus.CONNECTED, "connected")
            return
        changes = messages.apply_entities_event(self._states, event)
        updated = {k: v for k, v in changes.updated.items() if exposed(k)}
        removed = [k for k in changes.removed if k in self._states]
        for entity_id in removed:
            del self._states[entity_id]
        self._states.update(updated)
        if changes.unknown:
            log.debug("Diff for unknown entities ignored: %s", ", ".join(changes.unknown[:5]))
        if updated or removed:
            self._sink.upstream_changes(updated, removed)

    def _set_status(self, status: UpstreamStatus, reason: str) -> None:
        self.reason = reason
        if status is not self.status:
            self.status = status
            self._sink.upstream_status(status, reason)


def _dumps(message: dict[str, Any]) -> str:
    # HA drops the whole connection on JSON it cannot parse, so NaN never goes out.
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def _describe_close(e: ConnectionClosed) -> str:
    if e.rcvd is not None:
        return f"closed by Home Assistant (code {e.rcvd.code})"
    return "connection lost"


def _describe_error(e: BaseException) -> str:
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
