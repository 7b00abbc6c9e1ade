"""The one connection to Home Assistant, kept for ever: what the app and the cluster use.

:class:`HAClient` composes the parts: a :class:`~.connection.Connection` per attempt (socket,
auth, ids, pending calls, ping), the :class:`~.collection.EntityCollection` that outlives
them (snapshot, changes, HA starting, history), and the reconnect schedule below (delays from
``backoff.py``). It owns the status the routes show.

Reconnect schedule: HA restarts on every update, typically for 2-60 s. After a connection
that was up (snapshot received), however it ended, the first retry comes after 0.25 s, then
one a second for the first minute of the outage, so an ordinary restart is noticed within
about a second of HA accepting connections. A refused connect costs HA nothing. Past a
minute, the outage is probably a long one (maintenance, host down): the delay grows with it
(a tenth of its length) up to ``HA_BACKOFF_MAX``, which also caps every delay above.
A refused token is :class:`~.connection.AuthInvalid` (``backoff.Fatal``): the next try waits
``HA_AUTH_RETRY``, since quick retries raise notifications in HA and may get our IP banned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .. import backoff
from ..filters import EntityPattern
from ..types import UpstreamStatus
from . import messages
from .collection import EntityCollection, UpstreamSink
from .connection import (
    ENDINGS,
    AuthInvalid,
    Build,
    Connection,
    HAError,
    NotConnected,
    describe_error,
    display_url,
    open_socket,
)

__all__ = ["AuthInvalid", "HAClient", "HAError", "NotConnected", "UpstreamSink"]

log = logging.getLogger("sse_service.upstream")

FIRST_RETRY = 0.25
FAST_RETRY = 1.0
FAST_PERIOD = 60.0
# While HA stays unreachable, a line every this many seconds at most (not one per try).
LOG_EVERY = 30.0


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
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._connect_timeout = connect_timeout
        self._backoff_max = backoff_max
        self._auth_retry = auth_retry
        self._use_proxy = use_proxy
        self._sink = sink
        self._entities = EntityCollection(
            sink,
            exposed=exposed,
            request=self._request,
            set_status=self._set_status,
            history_window=history_window,
            history_entities=history_entities,
        )
        self._session: Connection | None = None  # the current connection, once authenticated
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
        return display_url(self._url)

    def retry_in(self) -> float | None:
        """Seconds until the next connect attempt, or None while connected."""
        if self.next_attempt_at is None or self.connected:
            return None
        return max(0.0, self.next_attempt_at - asyncio.get_running_loop().time())

    @property
    def connected(self) -> bool:
        # A starting HA takes commands (it answers not_found for a service not loaded yet).
        session = self._session
        return (
            self.status in (UpstreamStatus.CONNECTED, UpstreamStatus.STARTING) and session is not None and session.open
        )

    async def run(self) -> None:
        """Connect, and reconnect for ever; returns only when cancelled."""
        loop = asyncio.get_running_loop()
        attempt = 0
        outage_since = loop.time()
        delays = self._delays(outage_since, loop.time)
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
                delays = self._delays(outage_since, loop.time)
                continue
            except Exception as e:
                if not backoff.is_transient(e, ENDINGS):
                    raise  # a bug: not for the retry loop to hide
                reason = describe_error(e)
            now = loop.time()
            if self._healthy:
                # However it ended (close frame, 1006, pong timeout, network), a connection
                # that was up starts the next outage from the first, short delay.
                ever_connected = True
                attempt = 0
                outage_since = now
                delays = self._delays(outage_since, loop.time)
                last_logged = -LOG_EVERY
            if not ever_connected:
                reason = f"cannot connect: {reason}"
            self._set_status(UpstreamStatus.DISCONNECTED, reason)
            delay = next(delays)
            attempt += 1
            self.next_attempt_at = now + delay
            if now - last_logged >= LOG_EVERY:
                last_logged = now
                tries = f" (try {attempt})" if attempt > 1 else ""
                log.warning("Upstream %s%s: %s; next try in %.1f s", self.display_url, tries, reason, delay)
            await asyncio.sleep(delay)

    def _delays(self, since: float, clock: Callable[[], float]) -> Iterator[float]:
        """The schedule of the module doc, for an outage that began at ``since``."""
        return backoff.outage_delays(
            since, clock, cap=self._backoff_max, first=FIRST_RETRY, fast=FAST_RETRY, fast_period=FAST_PERIOD
        )

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

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        """The recorder's numbers for ``entity_ids`` between two instants. Raises NotConnected or HAError.

        The caller bounds the span and wraps this in its own timeout.
        """
        return await self._entities.history(entity_ids, start, end)

    async def _request(self, build: Build) -> Any:
        """Send one command and return HA's ``result``. Raises NotConnected or HAError."""
        session = self._session
        if session is None or not self.connected:
            raise NotConnected("not connected to Home Assistant")
        return await session.request(build)

    async def _connect_once(self) -> None:
        """Run one connection to its end (an exception says how it ended)."""
        conn = await open_socket(self._url, connect_timeout=self._connect_timeout, use_proxy=self._use_proxy)
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await conn.authenticate(self._token)
            finally:
                if conn.greeted:
                    self.ha_version = conn.ha_version
            self.connects += 1
            log.info(
                "Upstream authenticated at %s (Home Assistant %s)",
                self.display_url,
                self.ha_version or "unknown version",
            )
            self._session = conn
            await conn.send(messages.supported_features)
            await conn.watch_for_shutdown()
            await self._entities.attach(conn)
            pinger = asyncio.create_task(
                conn.keep_alive(self._ping_interval, self._pong_timeout, self._on_rtt), name="ha-ping"
            )
            try:
                await conn.read()
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
                self._healthy = await self._entities.detach()
        except NotConnected as e:
            raise ConnectionError(str(e)) from None  # a send found the connection gone
        finally:
            self._session = None
            await conn.close()

    def _on_rtt(self, rtt: float) -> None:
        self.pong_rtt = rtt

    def _set_status(self, status: UpstreamStatus, reason: str) -> None:
        self.reason = reason
        if status is not self.status:
            self.status = status
            self._sink.upstream_status(status, reason)
