"""The exposed entities as Home Assistant has them, kept across connections and fed to the sink.

On every connection: one ``subscribe_entities`` subscription whose first event is an
authoritative snapshot (the later ones are applied by the reducer in ``entities.py``), the
exposure filter, ``last_reported``, HA's core state while it starts, and afterwards the
recorder's past of the numeric entities.

What real HA releases do differently, and what this does about it
(``shared/docs/real-ha-testing.md``):

* **Filters.** ``subscribe_entities`` takes ``include`` from 2024.9 on; older versions log an
  error for it. They get the exact ``entity_ids`` where ``ENTITIES`` names only exact ids,
  and otherwise every entity, filtered here.
* **Start-up.** HA accepts connections before it has finished loading: right after a start,
  2026.11 answered ``get_states`` and the first ``subscribe_entities`` event with 4 of its 15
  entities, and the rest arrived as additions over ~1.5 s (2025.4: 5 of 11). Taking that first
  answer as the whole truth would remove entities that still exist. So the collection asks HA's
  core state (``get_config``) and listens for ``core_config_updated``, as HA's own frontend
  does: until HA is ``RUNNING`` the status is ``starting``, what HA sends is merged into the
  view from before and nothing is removed unless HA says so; once HA runs, the view is what HA
  has, and only the entities that really vanished are removed.
* **last_reported** exists from 2024.4 on, but the compressed stream does not carry it: the
  snapshot takes it from one ``get_states`` sent just before the subscription; each change
  sets it to ``last_updated``, as HA does (writes that change nothing are not streamed).

A little over 300 lines: the subscription, the start-up merge and the history fetch all act
on one per-connection view, and splitting them would pass that view around for no gain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from ..filters import EntityPattern
from ..store import numeric_value
from ..times import timestamp_from_iso
from ..types import EntityState, UpstreamStatus
from . import messages
from .connection import Build, Connection, HAError, NotConnected
from .entities import apply_entities_event
from .messages import Message, ProtocolError

__all__ = ["EntityCollection", "UpstreamSink"]

log = logging.getLogger("sse_service.upstream")

# HA's core state once it has finished starting (``get_config`` -> ``state``).
RUNNING = "RUNNING"
# While HA is starting, its core state is asked again this often, in case the
# core_config_updated event that says it runs never reaches us.
START_POLL = 2.0
HISTORY_TIMEOUT = 30.0


class UpstreamSink(Protocol):
    """Where the client delivers what it learns. Called from the read loop: never block."""

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None: ...

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None: ...

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None: ...

    def upstream_history(self, recorded: Mapping[str, Sequence[tuple[float, float]]]) -> None: ...


class _View:
    """What the collection knows of one connection; thrown away with it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.snapshot_seen = False  # of the current subscription
        self.healthy = False  # a snapshot came on this connection
        self.local_filter_only = False
        self.core_state: str | None = None  # HA's, from get_config; None until it answers
        self.starting = False  # the view is HA's partial one merged into the previous (see the module doc)
        self.loaded: set[str] = set()  # while starting: the exposed entities HA has sent on this connection
        self.reported: dict[str, tuple[float, str]] = {}  # entity -> (last_updated, last_reported)
        self.history_task: asyncio.Task[None] | None = None
        self.start_poll: asyncio.Task[None] | None = None


class EntityCollection:
    """The current exposed states; each connection refreshes them, none patches blindly."""

    def __init__(
        self,
        sink: UpstreamSink,
        *,
        exposed: EntityPattern,
        request: Callable[[Build], Awaitable[Any]],
        set_status: Callable[[UpstreamStatus, str], None],
        history_window: float = 0.0,
        history_entities: int = 50,
    ) -> None:
        self._sink = sink
        self._exposed = exposed
        self._request = request  # the client's: refused unless it is connected
        self._set_status = set_status
        self._history_window = history_window
        self._history_entities = history_entities
        self._history_said: str | None = None  # the last "no history" reason logged
        self._states: dict[str, EntityState] = {}
        self._view: _View | None = None

    async def attach(self, conn: Connection) -> None:
        """Ask a new connection for the view: core state, ``last_reported``, then the subscription."""
        view = self._view = _View(conn)
        # Subscribed before asking, so that the change to RUNNING cannot fall between the two.
        await conn.send(
            lambda i: messages.subscribe_events(i, "core_config_updated"),
            lambda m: self._on_config_event(view, m),
            subscription=True,
        )
        await self._ask_core_state(view)
        if messages.version_at_least(conn.ha_version, (2024, 4)):
            await conn.send(lambda i: messages.simple(i, "get_states"), lambda m: self._on_states(view, m))
        await self._subscribe(view)

    async def detach(self) -> bool:
        """The connection ended: stop its tasks. Whether it got its snapshot."""
        view = self._view
        if view is None:
            return False
        for task in (view.history_task, view.start_poll):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return view.healthy

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        """The recorder's numbers for ``entity_ids`` between two instants. Raises NotConnected or HAError."""
        result = await self._request(lambda i: messages.history_during_period(i, start, end, entity_ids))
        return await asyncio.to_thread(messages.history_points, result)

    # --- the subscription -------------------------------------------------------------

    async def _subscribe(self, view: _View, *, local_filter_only: bool = False) -> None:
        view.local_filter_only = local_filter_only
        view.snapshot_seen = False
        globs: Sequence[str] | None = None
        entity_ids: Sequence[str] | None = None
        if not (self._exposed.matches_all or local_filter_only):
            if messages.version_at_least(view.conn.ha_version, (2024, 9)):
                globs = self._exposed.globs
            elif self._exposed.exact_ids is not None:
                entity_ids = self._exposed.exact_ids
            else:
                view.local_filter_only = True  # globs, and an HA that takes none: filter here
        await view.conn.send(
            lambda i: messages.subscribe_entities(i, globs, entity_ids),
            lambda m: self._on_subscription(view, m),
            subscription=True,
        )

    async def _on_subscription(self, view: _View, message: Message) -> None:
        if message["type"] == "event":
            event = message.get("event")
            if not isinstance(event, dict):
                raise ProtocolError("entities event is not an object")
            self._on_entities_event(view, event)
        elif not message.get("success"):
            error = message.get("error") or {}
            if not view.local_filter_only:
                # HA before 2024.9 has no include filter on subscribe_entities: take every
                # entity and drop the ones that are not exposed here.
                log.warning("HA refused the filtered subscription (%s); filtering locally", error.get("message"))
                await self._subscribe(view, local_filter_only=True)
                return
            raise ProtocolError(f"subscribe_entities failed: {error.get('code')}: {error.get('message')}")

    async def _on_states(self, view: _View, message: Message) -> None:
        result = message.get("result") if message.get("success") else None
        for state in result if isinstance(result, list) else []:
            if not isinstance(state, dict):
                continue
            entity_id, updated, reported = state.get("entity_id"), state.get("last_updated"), state.get("last_reported")
            if isinstance(entity_id, str) and isinstance(updated, str) and isinstance(reported, str):
                with contextlib.suppress(ValueError):
                    view.reported[entity_id] = (timestamp_from_iso(updated), reported)

    def _on_entities_event(self, view: _View, event: dict[str, Any]) -> None:
        exposed = self._exposed
        reported = messages.version_at_least(view.conn.ha_version, (2024, 4))
        if not view.snapshot_seen:
            # The first event after (re)subscribing holds every state HA has loaded.
            view.snapshot_seen = True
            view.healthy = True
            changes = apply_entities_event({}, event, reported=reported)
            states = {k: _with_reported(view, v) for k, v in changes.updated.items() if exposed(k)}
            view.reported.clear()
            if view.core_state == RUNNING:
                self._states = states
                self._take_view(view)
            else:
                # Not known to run yet: merge, remove nothing (see the module doc).
                view.starting = True
                view.loaded = set(states)
                self._states.update(states)
                if states:
                    self._sink.upstream_changes(states, [])
                if view.core_state is not None:
                    self._say_starting(view)
            return
        changes = apply_entities_event(self._states, event, reported=reported)
        updated = {k: v for k, v in changes.updated.items() if exposed(k)}
        removed = [k for k in changes.removed if k in self._states]
        for entity_id in removed:
            del self._states[entity_id]
        self._states.update(updated)
        if view.starting:
            view.loaded.update(updated)
            view.loaded.difference_update(removed)
        if changes.unknown:
            log.debug("Diff for unknown entities ignored: %s", ", ".join(changes.unknown[:5]))
        if updated or removed:
            self._sink.upstream_changes(updated, removed)

    # --- HA starting --------------------------------------------------------------------

    async def _on_config_event(self, view: _View, message: Message) -> None:
        # The event carries no state: ask for it (this is how HA's frontend learns it runs).
        if message["type"] == "event" and view.core_state != RUNNING:
            await self._ask_core_state(view)

    async def _ask_core_state(self, view: _View) -> None:
        await view.conn.send(lambda i: messages.simple(i, "get_config"), lambda m: self._on_core_state(view, m))

    async def _on_core_state(self, view: _View, message: Message) -> None:
        result = message.get("result") if message.get("success") else None
        state = result.get("state") if isinstance(result, dict) else None
        # An HA that cannot say (an error, no "state" field) is taken as running, as before.
        view.core_state = state if isinstance(state, str) and state else RUNNING
        if not view.snapshot_seen:
            return
        if view.core_state == RUNNING:
            if view.starting:
                # HA has loaded everything: what it has not sent on this connection is gone.
                view.starting = False
                self._states = {k: v for k, v in self._states.items() if k in view.loaded}
                view.loaded = set()
                self._take_view(view)
        elif view.starting:
            self._say_starting(view)

    def _say_starting(self, view: _View) -> None:
        state = (view.core_state or "").lower().replace("_", " ")
        if state in ("", "starting", "not running"):
            state = "starting"
        self._set_status(UpstreamStatus.STARTING, f"Home Assistant is {state}")
        if view.start_poll is None:
            view.start_poll = asyncio.create_task(self._poll_core_state(view), name="ha-start-poll")

    async def _poll_core_state(self, view: _View) -> None:
        with contextlib.suppress(ConnectionClosed, NotConnected):
            while view.starting:
                await asyncio.sleep(START_POLL)
                if view.starting:
                    await self._ask_core_state(view)

    def _take_view(self, view: _View) -> None:
        """``self._states`` is HA's whole view now: hand it over as the snapshot, then its past."""
        self._sink.upstream_snapshot(dict(self._states))
        self._set_status(UpstreamStatus.CONNECTED, "connected")
        if self._history_window > 0:
            numbers = [e for e, state in self._states.items() if numeric_value(state["state"]) is not None]
            if numbers:
                view.history_task = asyncio.create_task(self._fetch_history(numbers), name="ha-history")

    # --- the recorder's past ------------------------------------------------------------

    async def _fetch_history(self, numbers: list[str]) -> None:
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
            return  # the connection is ending; the next one asks again
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


def _with_reported(view: _View, state: EntityState) -> EntityState:
    """The state with HA's own last_reported, where get_states saw this very version of it."""
    seen = view.reported.get(state["entity_id"])
    if seen is None or "last_reported" not in state:
        return state
    # The stream's float seconds and get_states' ISO text of one instant differ by float
    # rounding only; another write would be apart by far more than a millisecond.
    if abs(seen[0] - timestamp_from_iso(state["last_updated"])) > 0.001:
        return state
    return {**state, "last_reported": seen[1]}
