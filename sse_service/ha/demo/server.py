"""An embedded Home Assistant: the WebSocket API on loopback (the simulated home is ``home.py``).

With no ``HA_URL`` the service starts this server and connects to it through the very same
client code it uses for a real HA, so a fresh clone shows live data at once. The tests use
it (with the simulation off) as their fake HA: it follows the protocol closely enough to
exercise auth failures, id rules, coalesced frames, restarts and service errors.

Protocol coverage: ``auth_required``/``auth``/``auth_ok``/``auth_invalid``, ``supported_features``
(coalesced arrays), ``get_states``, ``get_config``, ``auth/current_user``, ``subscribe_entities``
(``entity_ids``, ``include``/``exclude``), ``subscribe_events`` (``state_changed``, and
``homeassistant_stop`` for admins), ``unsubscribe_events``, ``call_service``, ``ping``;
``id_reuse``, ``invalid_format``, ``unauthorized`` and ``unknown_command`` errors.

``core_state`` is what ``get_config`` says; :meth:`begin_start` and :meth:`finish_start` play a
Home Assistant that accepts connections before it has loaded every entity, as real releases do
(2026.11 answered with 4 of 15 right after a start), and fire ``core_config_updated`` (which
anyone may subscribe to) when it changes.

``version`` picks what differs between HA releases: before 2024.9 ``subscribe_entities``
refuses ``include``, before 2024.4 states have no ``last_reported``. :meth:`shut_down`
goes away the way each real release does on SIGTERM (see shared/docs/real-ha-testing.md).

This module stays above 300 lines on purpose: it is one fake server whose state machine,
coalescing writer and command table share one object's state, and the command handlers
(a few lines each) side by side read as the list of what the fake covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import inspect
import json
import logging
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ...times import iso_from_timestamp, timestamp_from_iso
from ...types import EntityState
from .. import messages
from ..entities import make_state
from .states import compress_state, diff_states

__all__ = ["DemoHomeAssistant", "ServiceCall", "ServiceError"]

log = logging.getLogger("sse_service.demo")

HA_VERSION = "2026.11.0"
AUTH_TIMEOUT = 10.0
MAX_PENDING = 4096  # HA drops a client that falls this far behind (protocol notes §6.1)
RECORDER_ROWS = 20_000  # per entity


@dataclasses.dataclass
class ServiceCall:
    domain: str
    service: str
    data: dict[str, Any]
    entity_ids: list[str]


class ServiceError(Exception):
    """Raised by a service handler; reaches the client as HA's error object."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


ServiceHandler = Callable[[ServiceCall], Awaitable[Any] | Any]


def _context_id() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(random.choice(alphabet) for _ in range(26))


def _now_iso() -> str:
    return iso_from_timestamp(time.time())


class _Client:
    """One connected WebSocket client, with HA's coalescing writer."""

    def __init__(self, ws: ServerConnection, server: DemoHomeAssistant) -> None:
        self.ws = ws
        self.server = server
        self.last_id = 0
        self.coalesce = False
        self.queue: list[str] = []
        self.wakeup = asyncio.Event()
        self.entity_subs: dict[int, Callable[[str], bool]] = {}
        self.event_subs: dict[int, str] = {}  # subscription id -> event type
        self.received: list[dict[str, Any]] = []
        self.closing = False  # sent its close frame, TCP still open (see shut_down)

    def send(self, message: Mapping[str, Any]) -> None:
        if len(self.queue) >= MAX_PENDING:
            log.warning("Demo HA: client unable to keep up with pending messages; closing it")
            self.ws.transport.abort()
            return
        if message.get("success") is False:
            self.server.errors_sent.append(dict(message))  # what a real HA would log as an error
        self.queue.append(json.dumps(message, separators=(",", ":")))
        self.wakeup.set()

    async def writer(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            if len(batch) == 1 or not self.coalesce:
                for text in batch:
                    await self.ws.send(text)
            else:
                self.server.arrays_sent += 1
                await self.ws.send("[" + ",".join(batch) + "]")


class DemoHomeAssistant:
    """A small HA WebSocket API server on loopback. Mutate it with :meth:`set_state` and friends."""

    def __init__(
        self,
        token: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = HA_VERSION,
        admin: bool = True,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.port = port
        self.version = version
        self.admin = admin  # the token's user: only admins may subscribe to homeassistant_stop
        self.user_id = secrets.token_hex(16)
        self.states: dict[str, EntityState] = {}
        self.services: dict[tuple[str, str], ServiceHandler] = {}
        self.clients: set[_Client] = set()
        self.connections_total = 0
        self.auth_failures = 0
        self.service_calls: list[ServiceCall] = []
        self.refuse_filtered_subscribe = not messages.version_at_least(version, (2024, 9))
        self.answer_pings = True  # False: a half-open connection, as far as the client can tell
        self.arrays_sent = 0
        self.errors_sent: list[dict[str, Any]] = []
        # The recorder: (last_updated, state) per entity, as HA's history integration keeps it.
        self.has_recorder = True
        self.recorder: dict[str, list[tuple[float, str]]] = {}
        self.core_state = "RUNNING"
        self._loading: dict[str, EntityState] = {}  # loaded by finish_start (see begin_start)
        self._server: Server | None = None
        self._sock: socket.socket | None = None  # bound by bind(), served by start()
        self._lingering: set[asyncio.TimerHandle] = set()
        for service in ("turn_on", "turn_off", "toggle"):
            self.services[("switch", service)] = self._switch_service

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/api/websocket"

    @property
    def running(self) -> bool:
        return self._server is not None

    def bind(self) -> None:
        """Take a port now, so that :attr:`url` is known before :meth:`start` (the service builds
        its client up front, before its lifetime starts the demo)."""
        if self._sock is None and self._server is None:
            self._sock = socket.create_server((self.host, self.port))
            self.port = self._sock.getsockname()[1]

    async def start(self) -> None:
        """Listen (again on the same port after :meth:`stop`, like a restarted HA)."""
        if self._server is not None:
            return
        if self._sock is not None:
            sock, self._sock = self._sock, None
            self._server = await serve(self._handle, sock=sock, max_size=4 * 2**20, logger=log)
        else:
            self._server = await serve(self._handle, self.host, self.port, max_size=4 * 2**20, logger=log)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Go away: stop listening and close every connection with a close handshake."""
        for task in list(self._lingering):
            task.cancel()
        server, self._server = self._server, None
        if server is None:
            return
        for client in list(self.clients):
            if client.closing:
                client.ws.transport.abort()
        server.close()
        await server.wait_closed()

    def announce_stop(self) -> None:
        """Fire ``homeassistant_stop`` to its subscribers, and nothing else (yet)."""
        for client in list(self.clients):
            for sub_id, event_type in client.event_subs.items():
                if event_type == "homeassistant_stop":
                    event = {"event_type": "homeassistant_stop", "data": {}, "origin": "LOCAL"}
                    client.send({"id": sub_id, "type": "event", "event": event})

    async def shut_down(self, how: Literal["2024.3", "2025.4", "starting"], *, linger: float = 10.0) -> None:
        """Stop as a real HA does on SIGTERM, then listen no more (until :meth:`start`).

        ``"2024.3"``: a ``homeassistant_stop`` event to whoever subscribed to it, then the TCP
        connection drops without a close frame (the client sees 1006). ``"2025.4"``: a close
        frame (1000), but the TCP connection ends only ``linger`` seconds later (aiohttp's
        shutdown timeout); a client that waits for the end of TCP believes it is connected.
        ``"starting"``: what 2026.11 does when stopped before it runs: TCP drops with no close
        frame and no event.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        for client in list(self.clients):
            if how in ("2024.3", "starting"):
                for sub_id, event_type in client.event_subs.items() if how == "2024.3" else ():
                    if event_type == "homeassistant_stop":
                        event = {"event_type": "homeassistant_stop", "data": {}, "origin": "LOCAL"}
                        await client.ws.send(json.dumps({"id": sub_id, "type": "event", "event": event}))
                client.ws.transport.abort()  # no close frame: the client sees 1006
            else:
                client.closing = True
                client.ws.transport.write(b"\x88\x02\x03\xe8")  # FIN + close, code 1000; never read the reply
                client.ws.transport.pause_reading()
                task = asyncio.get_running_loop().call_later(linger, client.ws.transport.abort)
                self._lingering.add(task)

    def begin_start(self, not_loaded_yet: Iterable[str]) -> None:
        """Be a Home Assistant that has just started: ``STARTING``, and these entities not loaded yet.

        Until :meth:`load` or :meth:`finish_start`, ``get_states`` and ``subscribe_entities``
        leave them out, as a real HA does for the first second or two after a start.
        """
        self._set_core_state("STARTING")
        for entity_id in not_loaded_yet:
            state = self.states.pop(entity_id, None)
            if state is not None:
                self._loading[entity_id] = state

    def load(self, entity_ids: Iterable[str] | None = None) -> None:
        """Entities held back by :meth:`begin_start` arrive, each as an addition (``"a"``)."""
        for entity_id in list(self._loading) if entity_ids is None else list(entity_ids):
            state = self._loading.pop(entity_id, None)
            if state is not None:
                self.states[entity_id] = state
                self._broadcast(entity_id, None, state)

    def finish_start(self) -> None:
        """Everything is loaded and HA is ``RUNNING`` (what HA fires ``core_config_updated`` for)."""
        self.load()
        self._set_core_state("RUNNING")

    def _set_core_state(self, state: str) -> None:
        self.core_state = state
        for client in list(self.clients):
            for sub_id, event_type in client.event_subs.items():
                if event_type == "core_config_updated":
                    event = {"event_type": "core_config_updated", "data": {}, "origin": "LOCAL"}
                    client.send({"id": sub_id, "type": "event", "event": event})

    async def __aenter__(self) -> DemoHomeAssistant:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- state changes, as HA's state machine would make them ---------------------------

    def set_state(
        self,
        entity_id: str,
        state: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> EntityState:
        """Write a state. Attributes default to the current ones; last_changed moves only with the state.

        A write that changes nothing only moves ``last_reported`` and sends no event, as in HA.
        """
        old = self.states.get(entity_id)
        now = _now_iso()
        new_attributes = dict(attributes if attributes is not None else (old["attributes"] if old else {}))
        if old is not None and old["state"] == state and old["attributes"] == new_attributes:
            if "last_reported" in old:
                self.states[entity_id] = {**old, "last_reported": now}
            return self.states[entity_id]
        changed = now if old is None or old["state"] != state else old["last_changed"]
        context = {"id": _context_id(), "parent_id": None, "user_id": user_id}
        reported = now if self.has_last_reported else None
        new = make_state(entity_id, state, new_attributes, changed, now, context, reported)
        self.states[entity_id] = new
        self.record(entity_id, timestamp_from_iso(now), state)
        self._broadcast(entity_id, old, new)
        return new

    def record(self, entity_id: str, when: float, state: str) -> None:
        """Add a row to the recorder (also how the demo home writes its past)."""
        rows = self.recorder.setdefault(entity_id, [])
        rows.append((when, state))
        if len(rows) > RECORDER_ROWS:
            del rows[: len(rows) - RECORDER_ROWS]

    @property
    def has_last_reported(self) -> bool:
        return messages.version_at_least(self.version, (2024, 4))

    def remove_state(self, entity_id: str) -> None:
        old = self.states.pop(entity_id, None)
        if old is not None:
            self._broadcast(entity_id, old, None)

    def _broadcast(self, entity_id: str, old: EntityState | None, new: EntityState | None) -> None:
        context_id = _context_id()
        for client in list(self.clients):
            for sub_id, wants in client.entity_subs.items():
                if not wants(entity_id):
                    continue
                if new is None:
                    event: dict[str, Any] = {"r": [entity_id]}
                elif old is None:
                    event = {"a": {entity_id: compress_state(new, context_id)}}
                else:
                    event = {"c": {entity_id: diff_states(old, new, context_id)}}
                # HA serialises cached events with the id last (§3.1); clients must not care.
                client.send({"type": "event", "event": event, "id": sub_id})
            for sub_id, event_type in client.event_subs.items():
                if event_type != "state_changed":
                    continue
                data = {
                    "entity_id": entity_id,
                    "old_state": _full(old, context_id),
                    "new_state": _full(new, context_id),
                }
                event = {"event_type": "state_changed", "data": data, "origin": "LOCAL", "time_fired": _now_iso()}
                client.send({"type": "event", "event": event, "id": sub_id})

    async def _switch_service(self, call: ServiceCall) -> None:
        for entity_id in call.entity_ids:
            current = self.states.get(entity_id)
            if current is None or not entity_id.startswith("switch."):
                continue
            if call.service == "toggle":
                state = "off" if current["state"] == "on" else "on"
            else:
                state = "on" if call.service == "turn_on" else "off"
            self.set_state(entity_id, state, user_id=self.user_id)

    # --- the WebSocket API --------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections_total += 1
        await ws.send(json.dumps({"type": "auth_required", "ha_version": self.version}))
        try:
            async with asyncio.timeout(AUTH_TIMEOUT):
                raw = await ws.recv()
            auth = json.loads(raw)
        except (TimeoutError, ValueError, ConnectionClosed):
            return  # HA disconnects without auth_invalid in these cases (§1.2)
        if not isinstance(auth, dict) or set(auth) != {"type", "access_token"} or auth["type"] != "auth":
            await ws.send(json.dumps({"type": "auth_invalid", "message": "Auth message incorrectly formatted"}))
            return
        if not secrets.compare_digest(str(auth["access_token"]).encode(), self.token.encode()):
            self.auth_failures += 1
            await ws.send(json.dumps({"type": "auth_invalid", "message": "Invalid access token or password"}))
            return
        await ws.send(json.dumps({"type": "auth_ok", "ha_version": self.version}))

        client = _Client(ws, self)
        self.clients.add(client)
        writer = asyncio.create_task(client.writer())
        try:
            async for frame in ws:
                try:
                    decoded = json.loads(frame, parse_int=_orjson_int)
                except ValueError:
                    # HA disconnects on invalid JSON in the command phase ("Received invalid
                    # JSON"), and its parser (orjson) takes no integer past 64 bits.
                    log.warning("Demo HA: Received invalid JSON; disconnecting the client")
                    return
                for message in decoded if isinstance(decoded, list) else [decoded]:
                    await self._command(client, message)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _command(self, client: _Client, message: Any) -> None:
        msg_id = message.get("id") if isinstance(message, dict) else None
        if (
            not isinstance(message, dict)
            or not isinstance(msg_id, int)
            or isinstance(msg_id, bool)
            or msg_id <= 0
            or not isinstance(message.get("type"), str)
            or not message["type"]
        ):
            client.send(_error(msg_id, "invalid_format", "Message incorrectly formatted."))
            return
        if msg_id <= client.last_id:
            client.send(_error(msg_id, "id_reuse", "Identifier values have to increase."))
            return
        client.received.append(message)
        kind = message["type"]
        handler = {
            "supported_features": self._cmd_supported_features,
            "get_states": self._cmd_get_states,
            "get_config": self._cmd_get_config,
            "auth/current_user": self._cmd_current_user,
            "history/history_during_period": self._cmd_history,
            "get_services": self._cmd_get_services,
            "subscribe_entities": self._cmd_subscribe_entities,
            "subscribe_events": self._cmd_subscribe_events,
            "unsubscribe_events": self._cmd_unsubscribe,
            "call_service": self._cmd_call_service,
            "ping": self._cmd_ping,
        }.get(kind)
        if handler is None:
            client.send(_error(msg_id, "unknown_command", "Unknown command."))
            return
        client.last_id = msg_id
        await handler(client, msg_id, message)

    async def _cmd_supported_features(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        features = message.get("features")
        client.coalesce = isinstance(features, dict) and "coalesce_messages" in features
        client.send(_result(msg_id, None))

    async def _cmd_get_states(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        client.send(_result(msg_id, [_full(s, _context_id()) for s in self.states.values()]))

    async def _cmd_history(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        if not self.has_recorder:
            client.send(_error(msg_id, "unknown_command", "Unknown command."))  # no history integration
            return
        try:
            start = timestamp_from_iso(str(message["start_time"]))
            end = timestamp_from_iso(str(message.get("end_time") or _now_iso()))
            entity_ids = _as_list(message["entity_ids"])
        except (KeyError, ValueError):
            client.send(_error(msg_id, "invalid_format", "Invalid start_time, end_time or entity_ids"))
            return
        result: dict[str, list[dict[str, Any]]] = {}
        for entity_id in entity_ids:
            rows = self.recorder.get(entity_id, [])
            before = [r for r in rows if r[0] < start][-1:]  # the state at start_time comes first
            inside = [r for r in rows if start <= r[0] <= end]
            chosen = [(max(t, start), v) for t, v in before] + inside
            if chosen:
                result[entity_id] = [{"s": v, "lu": t} for t, v in chosen]
        client.send(_result(msg_id, result))

    async def _cmd_get_services(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        services: dict[str, dict[str, Any]] = {}
        for domain, service in self.services:
            services.setdefault(domain, {})[service] = {"name": service, "description": "", "fields": {}}
        client.send(_result(msg_id, services))

    async def _cmd_current_user(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        user = {"id": self.user_id, "name": "Demo", "is_owner": self.admin, "is_admin": self.admin}
        client.send(_result(msg_id, user | {"credentials": [], "mfa_modules": []}))

    async def _cmd_get_config(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        client.send(_result(msg_id, {"version": self.version, "state": self.core_state, "location_name": "Demo home"}))

    async def _cmd_subscribe_entities(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        try:
            wants = _entity_filter(message)
        except ValueError as e:
            client.send(_error(msg_id, "invalid_format", str(e)))
            return
        if self.refuse_filtered_subscribe and ("include" in message or "exclude" in message):
            client.send(_error(msg_id, "invalid_format", "extra keys not allowed @ data['include']"))
            return
        client.entity_subs[msg_id] = wants
        client.send(_result(msg_id, None))
        context_id = _context_id()
        adds = {k: compress_state(v, context_id) for k, v in self.states.items() if wants(k)}
        client.send({"id": msg_id, "type": "event", "event": {"a": adds}})

    async def _cmd_subscribe_events(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        event_type = str(message.get("event_type"))
        # HA's allowlist for users who are not admins holds state_changed and core_config_updated.
        allowed = event_type in ("state_changed", "core_config_updated")
        if not allowed and not (self.admin and event_type == "homeassistant_stop"):
            client.send(_error(msg_id, "unauthorized", "Unauthorized"))
            return
        client.event_subs[msg_id] = event_type
        client.send(_result(msg_id, None))

    async def _cmd_unsubscribe(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        subscription = message.get("subscription")
        if not isinstance(subscription, int) or (
            client.entity_subs.pop(subscription, None) is None and subscription not in client.event_subs
        ):
            client.send(_error(msg_id, "not_found", "Subscription not found."))
            return
        client.event_subs.pop(subscription, None)
        client.send(_result(msg_id, None))

    async def _cmd_ping(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        if self.answer_pings:
            client.send({"id": msg_id, "type": "pong"})

    async def _cmd_call_service(self, client: _Client, msg_id: int, message: dict[str, Any]) -> None:
        domain, service = message.get("domain"), message.get("service")
        data = message.get("service_data") or {}
        target = message.get("target") or {}
        if not isinstance(domain, str) or not isinstance(service, str) or not isinstance(data, dict):
            client.send(_error(msg_id, "invalid_format", "expected str for dictionary value @ data['domain']"))
            return
        handler = self.services.get((domain, service))
        if handler is None:
            client.send(_error(msg_id, "not_found", f"Service {domain}.{service} not found."))
            return
        entity_ids = _as_list(target.get("entity_id") if isinstance(target, dict) else None)
        entity_ids += _as_list(data.get("entity_id"))
        call = ServiceCall(domain, service, {k: v for k, v in data.items() if k != "entity_id"}, entity_ids)
        self.service_calls.append(call)
        # Service calls are blocking in HA: the result comes when the service has finished,
        # and other commands on the connection keep flowing meanwhile.
        asyncio.create_task(self._run_service(client, msg_id, handler, call))

    async def _run_service(self, client: _Client, msg_id: int, handler: ServiceHandler, call: ServiceCall) -> None:
        try:
            outcome = handler(call)
            if inspect.isawaitable(outcome):
                await outcome
        except ServiceError as e:
            client.send(_error(msg_id, e.code, e.message))
            return
        except Exception as e:  # HA answers unknown_error with str(err) (§3.3)
            client.send(_error(msg_id, "unknown_error", str(e)))
            return
        client.send(_result(msg_id, {"context": {"id": _context_id(), "parent_id": None, "user_id": None}}))


# --- helpers -------------------------------------------------------------------------


def _result(msg_id: int, result: Any) -> dict[str, Any]:
    return {"id": msg_id, "type": "result", "success": True, "result": result}


def _error(msg_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": msg_id, "type": "result", "success": False, "error": {"code": code, "message": message}}


def _full(state: EntityState | None, context_id: str) -> dict[str, Any] | None:
    if state is None:
        return None
    full: dict[str, Any] = dict(state)
    full.setdefault("context", {"id": context_id, "parent_id": None, "user_id": None})
    return full


def _orjson_int(text: str) -> int:
    if len(text) > 20 or not -(2**63) <= int(text) < 2**64:
        raise ValueError(f"integer out of range: {text[:20]}")
    return int(text)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _globs(values: Iterable[Any]) -> Callable[[str], bool]:
    patterns = [str(v) for v in values]
    return lambda entity_id: any(fnmatch.fnmatchcase(entity_id, p) for p in patterns)


def _entity_filter(message: Mapping[str, Any]) -> Callable[[str], bool]:
    """``entity_ids`` AND (include minus exclude), as ``subscribe_entities`` applies them (§3.9)."""
    entity_ids = message.get("entity_ids")
    if entity_ids is not None and not isinstance(entity_ids, list | str):
        raise ValueError("expected a list for dictionary value @ data['entity_ids']")
    only = set(_as_list(entity_ids)) if entity_ids is not None else None

    def part(spec: Any, key: str) -> Callable[[str], bool] | None:
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) - {"domains", "entities", "entity_globs"}:
            raise ValueError(f"extra keys not allowed @ data['{key}']")
        domains = set(_as_list(spec.get("domains")))
        entities = set(_as_list(spec.get("entities")))
        globs = _globs(_as_list(spec.get("entity_globs")))
        return lambda e: e.split(".", 1)[0] in domains or e in entities or globs(e)

    include = part(message.get("include"), "include")
    exclude = part(message.get("exclude"), "exclude")

    def wants(entity_id: str) -> bool:
        if only is not None and entity_id not in only:
            return False
        if include is not None and not include(entity_id):
            return False
        return not (exclude is not None and exclude(entity_id))

    return wants
