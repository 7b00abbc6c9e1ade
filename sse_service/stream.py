"""``GET /events``: one Server-Sent Events stream per client.

Its size is mostly the design record below and the per-client write path, kept in one place
because a stream is the unit of memory per connection (issue 27 counts every object).

Design record
-------------
A stream costs one task: the request task uvicorn already runs, which only waits for the
disconnect. Frames are written by the hub, synchronously, through :meth:`ClientStream.write`:

* **Fast path.** ``send()`` of an ASGI server finishes without suspending while the socket
  accepts data (uvicorn awaits only when the transport has paused writing). So ``write``
  steps the ``send`` coroutine once; in the common case it completes on the spot and no task
  is ever woken. Measured against a task woken per client per event, this cuts the server's
  CPU per delivery by about 40 % (issue #6).
* **Slow path.** If ``send`` does suspend (the client reads slower than we write), the
  suspended coroutine is finished by a small task, and frames queue in a bounded outbox
  meanwhile. When the outbox would pass ``CLIENT_BUFFER_BYTES`` it is dropped and the
  client gets a fresh snapshot once it drains: memory stays bounded, other clients never
  wait, and the slow client still ends with the latest state of every entity.
* **Ahead of the stack.** The app takes ``/events`` before Starlette's middleware (``_App`` in
  ``app.py``), so ``send`` here is the server's own, not a coroutine per layer per write, and
  no middleware frame stays alive under an idle stream. This endpoint answers its own errors.
* **Ending.** To end a stream, the server sends the last body chunk; the ASGI server then
  answers the pending ``receive()`` with ``http.disconnect``, which ends the request task.
* **A token's view** is one filter (filters.combine: the token's globs and the stream's own
  ``?entity_id=``/``?domain=``), so the hub's entity index serves it like any filtered
  stream. A stream ends at the token's ``exp`` with ``event: expired`` and a ``retry:``
  long enough for the page to get a new token first (a cookie set meanwhile rides the
  browser's own reconnect, with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import sse
from .access import Grant, Keys, Refusal, StreamLimits, client_ip
from .filters import EntityFilter, FilterLimits, FilterTooLarge, combine
from .hub import Hub
from .responses import error_response, read_grant
from .untrusted import loggable

__all__ = ["EXPIRED_RETRY_MS", "ClientStream", "EventsEndpoint", "STREAM_HEADERS"]

log = logging.getLogger("sse_service.stream")

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # no-store for browsers, no-transform and X-Accel-Buffering for proxies that would
    # otherwise buffer or compress the stream.
    (b"cache-control", b"no-store, no-transform"),
    (b"x-accel-buffering", b"no"),
]
# The least retry: after event: expired, time for a page to fetch a new token first.
EXPIRED_RETRY_MS = 5000


SNAPSHOT_DATA = b"event: snapshot\r\ndata: {"
COMPACT_SNAPSHOT_DATA = b"event:snapshot\ndata:{"
FORMATS = {"full": False, "compact": True}  # ?format= -> compact or not
CAN_CALL, CANNOT_CALL = b'"can_call":true,', b'"can_call":false,'


class ClientStream:
    """The hub's handle on one connected client. ``write`` never blocks and never raises."""

    __slots__ = (
        "_closing",
        "_hub",
        "_limit",
        "_outbox",
        "_outbox_bytes",
        "_overflowed",
        "_send",
        "_task",
        "closed",
        "compact",
        "filter",
        "last_tick",
        "resets",
        "_snapshot_field",
        "_first",
    )

    def __init__(
        self,
        send: Send,
        hub: Hub,
        pattern: EntityFilter | None,
        buffer_limit: int,
        *,
        can_call: bool = True,
        compact: bool = False,
    ) -> None:
        self._send = send
        self.compact = compact
        # The hub's snapshot frames are shared by every stream with the same view; this viewer's
        # own field goes into each as it passes (snapshots are rare: on connect, after a reset).
        self._snapshot_field = CAN_CALL if can_call else CANNOT_CALL
        self._first = True  # the hub's first write is the snapshot (or a replay): personal, once
        self._hub = hub
        self._limit = buffer_limit
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._overflowed = False
        self._closing: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.filter = pattern
        self.last_tick = hub.tick
        self.resets = 0

    def _personal(self, data: bytes) -> bytes:
        """``data`` with this viewer's fields in its snapshot, if it starts with one (a snapshot is written alone,
        after at most a ``retry:``), so the search stays within the first bytes of a write."""
        marker = COMPACT_SNAPSHOT_DATA if self.compact else SNAPSHOT_DATA
        at = data.find(marker, 0, 160)
        if at < 0:
            return data
        at += len(marker)
        return data[:at] + self._snapshot_field + data[at:]

    @property
    def buffered_bytes(self) -> int:
        return self._outbox_bytes

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._first:  # a flag, not a search: the live path writes without looking into the bytes
            self._first = False
            data = self._personal(data)
        self.last_tick = self._hub.tick
        if self._task is not None:
            self._queue(data)
        else:
            self._send_now(data, more_body=True)

    def close(self, final: bytes) -> None:
        """Send ``final`` and end the response (the request task then sees a disconnect)."""
        if self.closed:
            return
        if self._task is not None:
            self._closing = final
        else:
            self._send_now(final, more_body=False)
        self.closed = True

    def detach(self) -> None:
        """The client went away: stop writing and drop what is queued."""
        self.closed = True
        self._outbox.clear()
        self._outbox_bytes = 0

    def _queue(self, data: bytes) -> None:
        if self._overflowed:
            return  # a snapshot follows as soon as the client drains
        if self._outbox_bytes + len(data) > self._limit:
            self._outbox.clear()
            self._outbox_bytes = 0
            self._overflowed = True
            self.resets += 1
            self._hub.resets += 1
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)

    def _send_now(self, data: bytes, *, more_body: bool) -> None:
        coro = self._send({"type": "http.response.body", "body": data, "more_body": more_body})
        if not isinstance(coro, Coroutine):  # an ASGI server whose send is not a coroutine
            self._task = asyncio.ensure_future(self._finish(_wrap(coro), None))
            return
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        except Exception:  # the transport is gone; the request task will see the disconnect
            log.debug("write to a closed stream dropped", exc_info=True)
            self.detach()
            return
        self._task = asyncio.ensure_future(self._finish(coro, waiting_on))

    async def _finish(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        """Drive a suspended ``send`` to its end, then flush what queued up meanwhile."""
        try:
            await _drive(coro, waiting_on)
            while not self.closed or self._closing is not None:
                if self._overflowed:
                    # Frames the hub still holds are older than the snapshot that replaces
                    # them: out (and dropped here) first, so no lower id follows the snapshot.
                    self._hub.flush()
                    self._overflowed = False
                    self._outbox.clear()
                    self._outbox_bytes = 0
                    data = self._personal(self._hub.snapshot_frame(self.filter, compact=self.compact))
                elif self._outbox:
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    self._outbox_bytes = 0
                elif self._closing is not None:
                    data, self._closing = self._closing, None
                    await self._send({"type": "http.response.body", "body": data, "more_body": False})
                    return
                else:
                    return
                await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception:
            log.debug("slow write ended with an error", exc_info=True)
            self.detach()
        finally:
            self._task = None


async def _wrap(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _drive(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
    """Finish a coroutine that was stepped by hand and suspended on ``waiting_on``.

    This is what an asyncio Task does for a coroutine: wait until what it yielded is done,
    then resume it. (Python 3.12's eager tasks do the same; 3.11 has none.)
    """
    while True:
        if isinstance(waiting_on, asyncio.Future):
            waiting_on._asyncio_future_blocking = False
            await asyncio.wait([waiting_on])
        else:
            await asyncio.sleep(0)  # a bare yield: give the loop one turn
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return


class EventsEndpoint:
    """The ``/events`` ASGI endpoint."""

    def __init__(
        self,
        hub: Hub,
        *,
        retry_ms: int,
        buffer_limit: int,
        keys: Keys | None = None,
        limits: StreamLimits | None = None,
        max_age: float = 0.0,
        filter_limits: FilterLimits | None = None,
        commands: bool = True,
    ) -> None:
        self.hub = hub
        self.commands = commands  # ALLOWED_SERVICES names at least one service
        self.retry_ms = retry_ms
        self.buffer_limit = buffer_limit
        self.keys = keys or Keys()
        self.limits = limits or StreamLimits(1_000_000, 1_000_000)
        self.max_age = max_age
        self.filter_limits = filter_limits or FilterLimits()
        self.token_streams: Counter[str] = Counter()  # open streams per token name, for /metrics
        self._by_token: dict[ClientStream, Grant] = {}
        self._revoked: set[ClientStream] = set()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: under an open stream, _stream's frame is this endpoint's only one
        # (issue 27). It runs ahead of Starlette's stack (see app.py): it answers its own errors.
        try:
            admitted = self._admit(scope)
        except Exception:
            log.exception("Unhandled error on %s /events", loggable(str(scope.get("method")), 20))
            admitted = error_response(500, "internal_error", "internal error; the details are in the server log")
        if isinstance(admitted, Response):
            return admitted(scope, receive, send)
        # The slot taken by _admit is released by _stream, which the caller awaits at once.
        return self._stream(scope["method"], *admitted, receive, send, request_headers=scope["headers"])

    def _admit(self, scope: Scope) -> Response | tuple[EntityFilter | None, Grant, str | None, bool, bool, str]:
        """The answer for a request that gets no stream, or what its stream needs (and a slot)."""
        if scope["method"] not in ("GET", "HEAD"):
            return error_response(405, "method_not_allowed", "use GET for /events", {"allow": "GET, HEAD"})
        # The server decodes both afresh for each request, and the scope keeps them as long as the stream.
        scope["method"], scope["path"] = sys.intern(scope["method"]), sys.intern(scope["path"])
        query = QueryParams(scope["query_string"])
        # raw=, not scope=: for scope= Starlette puts a copy of the list into the scope, and
        # that copy would outlive the request under every open stream (issue 27).
        headers = Headers(raw=scope["headers"])
        grant = read_grant(self.keys, headers, query)
        if isinstance(grant, Response):
            return grant  # a 401 also makes an EventSource stop retrying: right for a bad key or token
        try:
            pattern = combine(grant.entities, self.filter_limits.parse(query))
        except FilterTooLarge as e:
            return error_response(422, "filter_too_large", str(e))
        compact = FORMATS.get(query.get("format", "full"))
        if compact is None:
            return error_response(422, "invalid_query", "format: expected full or compact")
        last_event_id = headers.get("last-event-id") or query.get("last_event_id")
        ip = client_ip(scope)
        refusal = self.limits.acquire(ip)  # the last step: nothing after it may fail before release
        if refusal is not None:
            return self._refuse(refusal, headers)
        can_call = self.commands and self.keys.may_command(headers, query)
        return pattern, grant, last_event_id, can_call, compact, ip

    async def _stream(
        self,
        method: str,
        pattern: EntityFilter | None,
        grant: Grant,
        last_event_id: str | None,
        can_call: bool,
        compact: bool,
        ip: str,
        receive: Receive,
        send: Send,
        *,
        request_headers: object = None,
    ) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            # The request's headers are read (_admit) and the response has started (the server
            # and CORS look at them until then). The list is the server's, which keeps it for as
            # long as the request lasts: emptied in place, a browser's headers (cookies, user
            # agent: a kilobyte or two) no longer stay under every open stream (issue 27).
            if isinstance(request_headers, list):
                request_headers.clear()

            await self.hub.catch_up(last_event_id)  # an id from an instance ahead of this one
            stream = ClientStream(send, self.hub, pattern, self.buffer_limit, can_call=can_call, compact=compact)
            started = time.monotonic()
            shown = loggable(pattern.describe()) if pattern else "*"
            who = f"{loggable(ip)}, {grant.label}" if grant.token is not None else loggable(ip)
            ending = "client left"
            loop = asyncio.get_running_loop()
            # Jitter spreads the reconnects; ending below the cap beats the PaaS router to it.
            deadline = loop.time() + self.max_age * random.uniform(0.85, 1.0) if self.max_age else None
            expires = grant.expires
            expiry = None if expires is None else loop.time() + (expires - time.time())
            by_expiry = expiry is not None and (deadline is None or expiry <= deadline)
            if grant.token is not None:
                self.token_streams[grant.name or ""] += 1
                self._by_token[stream] = grant
            try:
                framing = sse.framing(compact)
                kind = self.hub.subscribe(stream, last_event_id, prefix=framing.retry(self.retry_ms))
                log.info("Stream opened for %s (filter %s, %s%s)", who, shown, kind, ", compact" if compact else "")
                # The waits are written out here: a helper coroutine would be one more frame under every stream.
                when = expiry if by_expiry else deadline
                try:
                    if when is None:  # no timeout at all, not an idle one: an asyncio.timeout is 112 bytes
                        while (await receive())["type"] != "http.disconnect":
                            pass
                    else:
                        async with asyncio.timeout_at(when):
                            while (await receive())["type"] != "http.disconnect":
                                pass
                except TimeoutError:
                    if by_expiry:
                        ending = "token expired"
                        stream.close(self._expired(expires or 0.0, compact))
                    else:
                        ending = "max age reached"
                        stream.close(framing.retry(min(self.retry_ms, 500)))  # back at once, with Last-Event-ID
                    while (await receive())["type"] != "http.disconnect":
                        pass
            finally:
                self.hub.unsubscribe(stream)
                if self._by_token.pop(stream, None) is not None:
                    self.token_streams[grant.name or ""] -= 1
                    if self.token_streams[grant.name or ""] <= 0:
                        del self.token_streams[grant.name or ""]
                if stream in self._revoked:
                    self._revoked.discard(stream)
                    ending = "token revoked"
                elif stream.closed and ending == "client left":
                    ending = "closed by the server"
                stream.detach()
                duration = time.monotonic() - started
                log.info("Stream closed for %s after %.1f s (filter %s, %s)", who, duration, shown, ending)
        finally:
            self.limits.release(ip)

    def revoke(self, revoked: frozenset[str]) -> int:
        """End the open streams of tokens whose ``jti`` or ``sub`` is in ``revoked``; returns how many."""
        data = sse.dumps({"code": "token_revoked", "message": "this token has been revoked"})
        final = {compact: sse.framing(compact).event("revoked", data) for compact in (False, True)}
        ended = 0
        for stream, grant in list(self._by_token.items()):
            claims = grant.token
            if claims is not None and not stream.closed and (claims.jti in revoked or claims.sub in revoked):
                self._revoked.add(stream)
                stream.close(final[stream.compact])  # the browser's reconnect then gets a 401
                ended += 1
        return ended

    def _expired(self, expires: float, compact: bool) -> bytes:
        """The last frame of a stream whose token expired: no id, so Last-Event-ID stays on the last event."""
        retry_ms = max(self.retry_ms, EXPIRED_RETRY_MS)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        message = f"the token expired at {at}; get a new one and reconnect with Last-Event-ID to resume"
        body = {"code": "token_expired", "message": message, "expired_at": at, "retry_ms": retry_ms}
        framing = sse.framing(compact)
        return framing.event("expired", sse.dumps(body)) + framing.retry(retry_ms)

    def _refuse(self, refusal: Refusal, headers: Headers) -> Response:
        """Over a stream cap. An EventSource gives up for good on any status but 200, and a
        full server is a passing condition: so a browser gets a 200 that says why and asks it
        to come back later (``retry:`` with jitter, so refused clients do not return as one
        herd). Any other client gets the plain HTTP answer."""
        if "text/event-stream" in headers.get("accept", ""):
            wait_ms = int(refusal.retry_after * 1000 * random.uniform(1.0, 2.0))
            body = sse.retry(wait_ms) + sse.event(
                "busy", sse.dumps({"code": refusal.code, "message": refusal.message, "retry_ms": wait_ms})
            )
            return Response(body, headers={k.decode(): v.decode() for k, v in STREAM_HEADERS})
        return error_response(refusal.status, refusal.code, refusal.message, {"retry-after": str(refusal.retry_after)})
