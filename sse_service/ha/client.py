"""The one connection to Home Assistant.

Handshake (``auth_required`` -> ``auth`` -> ``auth_ok``/``auth_invalid``), coalesced frames,
one ``subscribe_entities`` subscription whose first event is an authoritative snapshot,
an application-level ping, and reconnects on the schedule below.

The read loop only parses and hands records to the sink, which must not block: HA drops a
client whose queue of pending messages grows past 4096 (protocol notes §6.1).

What real HA releases do differently, and what this client does about it
(``shared/docs/real-ha-testing.md``):

* **Shutdown.** 2024.3 sends ``homeassistant_stop`` (to admins that subscribed) and drops TCP
  without a close frame; 2025.4 sends a close frame at once but ends TCP only ~10 s later.
  The stop event and the close frame each end the session at once: no command goes out
  into a connection that is going away, and clients learn of the outage when it starts.
* **Filters.** ``subscribe_entities`` takes ``include`` from 2024.9 on; older versions log an
  error for it. They get the exact ``entity_ids`` where ``ENTITIES`` names only exact ids,
  and otherwise every entity, filtered here.
* **Start-up.** HA accepts connections before it has finished loading: right after a start,
  2026.11 answered ``get_states`` and the first ``subscribe_entities`` event with 4 of its 15
  entities, and the rest arrived as additions over ~1.5 s (2025.4: 5 of 11). Taking that first
  answer as the whole truth would remove entities that still exist. So the client asks HA's
  core state (``get_config``) and listens for ``core_config_updated``, as HA's own frontend
  does: until HA is ``RUNNING`` the status is ``starting``, what HA sends is merged into the
  view from before and nothing is removed unless HA says so; once HA runs, the view is what HA
  has, and only the entities that really vanished are removed.
* **last_reported** exists from 2024.4 on, but the compressed stream does not carry it: the
  snapshot takes it from one ``get_states`` sent just before the subscription; each change
  sets it to ``last_updated``, as HA does (writes that change nothing are not streamed).

Reconnect schedule: HA restarts on every update, typically for 2-60 s. After a connection
that was up (snapshot received), however it ended, the first retry comes after 0.25 s, then
one a second for the first minute of the outage, so an ordinary restart is noticed within
about a second of HA accepting connections. A refused connect costs HA nothing. Past a
minute, the outage is probably a long one (maintenance, host down): the delay grows with it
(a tenth of its length) up to ``HA_BACKOFF_MAX``, which also caps every delay above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from .. import __version__
from ..filters import EntityPattern
from ..store import numeric_value
from ..times import timestamp_from_iso
from ..types import EntityState, UpstreamStatus
from . import messages
from .entities import apply_entities_event
from .messages import ProtocolError

__all__ = ["AuthInvalid", "HAClient", "HAError", "NotConnected", "UpstreamSink"]

log = logging.getLogger("sse_service.upstream")

FIRST_RETRY = 0.25
FAST_RETRY = 1.0
FAST_PERIOD = 60.0
# While HA stays unreachable, a line every this many seconds at most (not one per try).
LOG_EVERY = 30.0
# HA's core state once it has finished starting (``get_config`` -> ``state``).
RUNNING = "RUNNING"
# While HA is starting, its core state is asked again this often, in case the
# core_config_updated event that says it runs never reaches us.
START_POLL = 2.0
# Frames past this size are parsed in a worker thread: a day of history for many entities
# is megabytes of JSON, tens of milliseconds that every stream would otherwise wait.
LARGE_FRAME = 256 * 1024
HISTORY_TIMEOUT = 30.0


class UpstreamSink(Protocol):
    """Where the client delivers what it learns. Called from the read loop: never block."""

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None: ...

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None: ...

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None: ...

    def upstream_history(self, recorded: Mapping[str, Sequence[tuple[float, float]]]) -> None: ...


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


class _Connection(ClientConnection):
    """A WebSocket client connection that ends as soon as the server's close frame is in.

    websockets' client waits for the server to end TCP after the close handshake, as the RFC
    says; HA 2025.4 does so only ~10 s after its close frame. Our reply is already written
    when the frame is processed, so the handshake is complete and closing TCP here is safe.
    """

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
            self.transport.close()


class _Goodbye(Exception):
    """HA announced its shutdown (``homeassistant_stop``): the session ends now."""


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
        self.user_id: int | None = None  # the auth/current_user request
        self.stop_subscription_id: int | None = None
        self.states_id: int | None = None  # the get_states request whose last_reported we take
        self.history_task: asyncio.Task[None] | None = None
        self.config_ids: set[int] = set()  # get_config requests in flight
        self.config_events_id: int | None = None  # the core_config_updated subscription
        self.core_state: str | None = None  # HA's, from get_config; None until it answers
        self.starting = False  # the view is HA's partial one merged into the previous (see the module doc)
        self.loaded: set[str] = set()  # while starting: the exposed entities HA has sent in this session
        self.start_poll: asyncio.Task[None] | None = None
        self.reported: dict[str, tuple[float, str]] = {}  # entity -> (last_updated, last_reported)


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
        history_window: float = 0.0,
        history_entities: int = 50,
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
        self._history_window = history_window
        self._history_entities = history_entities
        self._history_said: str | None = None  # the last "no history" reason logged
        self._states: dict[str, EntityState] = {}
        self._session: _Session | None = None
        self.status = UpstreamStatus.CONNECTING
        self.reason = "starting"
        self.ha_version: str | None = None
        self.connects = 0
        self.pong_rtt: float | None = None
        self.next_attempt_at: float | None = None  # loop time of the next connect, while not connected
        self._healthy = False  # the current connection got its snapshot

    @property
    def display_url(self) -> str:
        """The HA URL for logs and messages: no credentials, no query."""
        return _display_url(self._url)

    def retry_in(self) -> float | None:
        """Seconds until the next connect attempt, or None while connected."""
        if self.next_attempt_at is None or self.connected:
            return None
        return max(0.0, self.next_attempt_at - asyncio.get_running_loop().time())

    # --- public API -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        # A starting HA takes commands (it answers not_found for a service not loaded yet).
        return self.status in (UpstreamStatus.CONNECTED, UpstreamStatus.STARTING) and self._session is not None

    async def run(self) -> None:
        """Connect, and reconnect for ever; returns only when cancelled."""
        loop = asyncio.get_running_loop()
        attempt = 0
        outage_since = loop.time()
        last_logged = -LOG_EVERY
        ever_connected = False
        while True:
            self._healthy = False
            try:
                await self._connect_once()
                reason = "connection closed by Home Assistant"
            except AuthInvalid as e:
                self._set_status(UpstreamStatus.AUTH_INVALID, f"auth_invalid: {e}")
                self.next_attempt_at = loop.time() + self._auth_retry
                log.error(
                    "Home Assistant at %s refused the token (%s); next try in %.0f s. Check HA_TOKEN.",
                    self.display_url,
                    e,
                    self._auth_retry,
                )
                await asyncio.sleep(self._auth_retry)
                attempt = 0
                continue
            except _Goodbye as e:
                reason = str(e)
            except ConnectionClosed as e:
                reason = _describe_close(e)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ProtocolError) as e:
                reason = _describe_error(e)
            now = loop.time()
            if self._healthy:
                # However it ended (close frame, 1006, pong timeout, network), a connection
                # that was up starts the next outage from the first, short delay.
                ever_connected = True
                attempt = 0
                outage_since = now
                last_logged = -LOG_EVERY
            if not ever_connected:
                reason = f"cannot connect: {reason}"
            self._set_status(UpstreamStatus.DISCONNECTED, reason)
            delay = self._backoff(attempt, now - outage_since)
            attempt += 1
            self.next_attempt_at = now + delay
            if now - last_logged >= LOG_EVERY:
                last_logged = now
                tries = f" (try {attempt})" if attempt > 1 else ""
                log.warning("Upstream %s%s: %s; next try in %.1f s", self.display_url, tries, reason, delay)
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
        return await self._request(lambda i: messages.call_service(i, domain, service, service_data, target))

    async def _request(self, build: Callable[[int], dict[str, Any]]) -> Any:
        """Send one command and return HA's ``result``. Raises NotConnected or HAError."""
        session = self._session
        if session is None or not self.connected:
            raise NotConnected("not connected to Home Assistant")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        msg_id = await self._send(session, build, future)
        try:
            reply = await future
        finally:
            session.pending.pop(msg_id, None)
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

    # --- one connection ---------------------------------------------------------------

    def _backoff(self, attempt: int, outage: float) -> float:
        """The delay before the next try, ``outage`` seconds into an outage (see the module doc)."""
        if attempt == 0:
            delay = FIRST_RETRY
        elif outage < FAST_PERIOD:
            delay = FAST_RETRY * random.uniform(0.8, 1.0)
        else:
            delay = max(FAST_RETRY, outage / 10) * random.uniform(0.5, 1.0)
        return min(delay, self._backoff_max)

    async def _connect_once(self) -> None:
        """Run one connection to its end (an exception says how it ended)."""
        async with asyncio.timeout(self._connect_timeout):
            ws = await connect(
                self._url,
                max_size=None,  # get_states-sized snapshots pass 1 MiB on big installs
                open_timeout=None,  # the timeout above covers it
                close_timeout=2,
                proxy=True if self._use_proxy else None,
                user_agent_header=f"sse_service/{__version__}",
                create_connection=_Connection,
            )
        session = _Session(ws)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._authenticate(ws)
            self.connects += 1
            log.info(
                "Upstream authenticated at %s (Home Assistant %s)",
                self.display_url,
                self.ha_version or "unknown version",
            )
            self._session = session
            await self._send(session, messages.supported_features)
            # Admins may hear HA announce its shutdown; others get "unauthorized", so ask first.
            session.user_id = await self._send(session, lambda i: messages.simple(i, "auth/current_user"))
            # Subscribed before asking, so that the change to RUNNING cannot fall between the two.
            session.config_events_id = await self._send(
                session, lambda i: messages.subscribe_events(i, "core_config_updated")
            )
            await self._ask_core_state(session)
            if messages.version_at_least(self.ha_version, (2024, 4)):
                session.states_id = await self._send(session, lambda i: messages.simple(i, "get_states"))
            await self._subscribe(session)
            pinger = asyncio.create_task(self._ping_loop(session), name="ha-ping")
            try:
                await self._read_loop(session)
            finally:
                for task in (pinger, session.history_task, session.start_poll):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        except NotConnected as e:
            raise ConnectionError(str(e)) from None  # a send found the connection gone
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
        globs: Sequence[str] | None = None
        entity_ids: Sequence[str] | None = None
        if not (self._exposed.matches_all or local_filter_only):
            if messages.version_at_least(self.ha_version, (2024, 9)):
                globs = self._exposed.globs
            elif self._exposed.exact_ids is not None:
                entity_ids = self._exposed.exact_ids
            else:
                session.local_filter_only = True  # globs, and an HA that takes none: filter here
        session.subscription_id = await self._send(session, lambda i: messages.subscribe_entities(i, globs, entity_ids))

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
            try:
                await session.ws.send(_dumps(build(msg_id)))
            except ConnectionClosed:
                # The connection is going away: the caller gets NotConnected, and the
                # future is nobody's to await any more.
                if future is not None:
                    session.pending.pop(msg_id, None)
                    future.cancel()
                raise NotConnected("the connection to Home Assistant is closing") from None
        return msg_id

    async def _ping_loop(self, session: _Session) -> None:
        try:
            await self._ping_forever(session)
        except (ConnectionClosed, NotConnected):
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
        # recv(), not ``async for``: that ends quietly on a clean close, and the close code
        # is what tells a user why the connection ended.
        while True:
            frame = await session.ws.recv()
            if len(frame) > LARGE_FRAME:
                parsed = await asyncio.to_thread(messages.parse_frame, frame)
            else:
                parsed = messages.parse_frame(frame)
            for message in parsed:
                await self._dispatch(session, message)

    async def _dispatch(self, session: _Session, message: dict[str, Any]) -> None:
        kind = message["type"]
        msg_id = message.get("id")
        if kind == "event" and msg_id == session.subscription_id:
            event = message.get("event")
            if not isinstance(event, dict):
                raise ProtocolError("entities event is not an object")
            self._on_entities_event(session, event)
        elif kind == "event" and msg_id == session.stop_subscription_id:
            raise _Goodbye("Home Assistant is shutting down")
        elif kind == "event" and msg_id == session.config_events_id:
            # The event carries no state: ask for it (this is how HA's frontend learns it runs).
            if session.core_state != RUNNING:
                await self._ask_core_state(session)
        elif kind in ("result", "pong"):
            if kind == "result" and msg_id == session.subscription_id and not message.get("success"):
                await self._on_subscribe_failed(session, message)
                return
            if kind == "result" and isinstance(msg_id, int) and msg_id in (session.user_id, session.states_id):
                await self._on_setup_result(session, msg_id, message)
                return
            if kind == "result" and isinstance(msg_id, int) and msg_id in session.config_ids:
                session.config_ids.discard(msg_id)
                self._on_core_state(session, message)
                return
            future = session.pending.get(msg_id) if isinstance(msg_id, int) else None
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "event":
            log.debug("Event for unknown subscription %r ignored", msg_id)

    async def _on_setup_result(self, session: _Session, msg_id: int, message: dict[str, Any]) -> None:
        result = message.get("result") if message.get("success") else None
        if msg_id == session.user_id:
            session.user_id = None
            if isinstance(result, dict) and result.get("is_admin") is True:
                session.stop_subscription_id = await self._send(
                    session, lambda i: messages.subscribe_events(i, "homeassistant_stop")
                )
            return
        session.states_id = None
        for state in result if isinstance(result, list) else []:
            if not isinstance(state, dict):
                continue
            entity_id, updated, reported = state.get("entity_id"), state.get("last_updated"), state.get("last_reported")
            if isinstance(entity_id, str) and isinstance(updated, str) and isinstance(reported, str):
                with contextlib.suppress(ValueError):
                    session.reported[entity_id] = (timestamp_from_iso(updated), reported)

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
        reported = messages.version_at_least(self.ha_version, (2024, 4))
        if not session.snapshot_seen:
            # The first event after (re)subscribing holds every state HA has loaded.
            session.snapshot_seen = True
            self._healthy = True
            changes = apply_entities_event({}, event, reported=reported)
            states = {k: self._with_reported(session, v) for k, v in changes.updated.items() if exposed(k)}
            session.reported.clear()
            if session.core_state == RUNNING:
                self._states = states
                self._take_view(session)
            else:
                # Not known to run yet: merge, remove nothing (see the module doc).
                session.starting = True
                session.loaded = set(states)
                self._states.update(states)
                if states:
                    self._sink.upstream_changes(states, [])
                if session.core_state is not None:
                    self._say_starting(session)
            return
        changes = apply_entities_event(self._states, event, reported=reported)
        updated = {k: v for k, v in changes.updated.items() if exposed(k)}
        removed = [k for k in changes.removed if k in self._states]
        for entity_id in removed:
            del self._states[entity_id]
        self._states.update(updated)
        if session.starting:
            session.loaded.update(updated)
            session.loaded.difference_update(removed)
        if changes.unknown:
            log.debug("Diff for unknown entities ignored: %s", ", ".join(changes.unknown[:5]))
        if updated or removed:
            self._sink.upstream_changes(updated, removed)

    async def _ask_core_state(self, session: _Session) -> None:
        session.config_ids.add(await self._send(session, lambda i: messages.simple(i, "get_config")))

    def _on_core_state(self, session: _Session, message: dict[str, Any]) -> None:
        result = message.get("result") if message.get("success") else None
        state = result.get("state") if isinstance(result, dict) else None
        # An HA that cannot say (an error, no "state" field) is taken as running, as before.
        session.core_state = state if isinstance(state, str) and state else RUNNING
        if not session.snapshot_seen:
            return
        if session.core_state == RUNNING:
            if session.starting:
                # HA has loaded everything: what it has not sent in this session is gone.
                session.starting = False
                self._states = {k: v for k, v in self._states.items() if k in session.loaded}
                session.loaded = set()
                self._take_view(session)
        elif session.starting:
            self._say_starting(session)

    def _say_starting(self, session: _Session) -> None:
        state = (session.core_state or "").lower().replace("_", " ")
        if state in ("", "starting", "not running"):
            state = "starting"
        reason = f"Home Assistant is {state}"
        self._set_status(UpstreamStatus.STARTING, reason)
        if session.start_poll is None:
            session.start_poll = asyncio.create_task(self._poll_core_state(session), name="ha-start-poll")

    async def _poll_core_state(self, session: _Session) -> None:
        with contextlib.suppress(ConnectionClosed, NotConnected):
            while session.starting:
                await asyncio.sleep(START_POLL)
                if session.starting:
                    await self._ask_core_state(session)

    def _take_view(self, session: _Session) -> None:
        """``self._states`` is HA's whole view now: hand it over as the snapshot, then its past."""
        self._sink.upstream_snapshot(dict(self._states))
        self._set_status(UpstreamStatus.CONNECTED, "connected")
        if self._history_window > 0:
            numbers = [e for e, state in self._states.items() if numeric_value(state["state"]) is not None]
            if numbers:
                session.history_task = asyncio.create_task(self._fetch_history(session, numbers), name="ha-history")

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        """The recorder's numbers for ``entity_ids`` between two instants. Raises NotConnected or HAError.

        The caller bounds the span and wraps this in its own timeout.
        """
        result = await self._request(lambda i: messages.history_during_period(i, start, end, entity_ids))
        return await asyncio.to_thread(messages.history_points, result)

    async def _fetch_history(self, session: _Session, numbers: list[str]) -> None:
        """After a snapshot: the recorder's past of the numeric entities, merged by the sink.

        Off the read loop, and never fatal: without the recorder (or the right to read it, or
        in time) the bridge keeps the history it gathers itself, and says so once.
        """
        end = time.time()
        chosen = sorted(numbers)[: self._history_entities]
        try:
            async with asyncio.timeout(HISTORY_TIMEOUT):
                recorded = await self.history(chosen, end - self._history_window, end)
        except HAError as e:
            self._say_no_history(f"Home Assistant answered {e.code}: {e.message or 'no details'}")
            return
        except TimeoutError:
            self._say_no_history(f"no answer within {HISTORY_TIMEOUT:g} s")
            return
        except (NotConnected, ProtocolError):
            return  # the session is ending; the next one asks again
        self._history_said = None
        if len(numbers) > len(chosen):
            log.info("History from the recorder for %d of %d numeric entities", len(chosen), len(numbers))
        self._sink.upstream_history(recorded)

    def _say_no_history(self, reason: str) -> None:
        if reason != self._history_said:
            self._history_said = reason
            log.warning(
                "No history from Home Assistant's recorder (%s); charts start from what the bridge sees. "
                "HA needs the recorder and history integrations for more.",
                reason,
            )

    @staticmethod
    def _with_reported(session: _Session, state: EntityState) -> EntityState:
        """The state with HA's own last_reported, where get_states saw this very version of it."""
        seen = session.reported.get(state["entity_id"])
        if seen is None or "last_reported" not in state:
            return state
        # The stream's float seconds and get_states' ISO text of one instant differ by float
        # rounding only; another write would be apart by far more than a millisecond.
        if abs(seen[0] - timestamp_from_iso(state["last_updated"])) > 0.001:
            return state
        return {**state, "last_reported": seen[1]}

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


def _display_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path.split('?', 1)[0]}"


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
