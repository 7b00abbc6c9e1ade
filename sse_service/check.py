"""``sse-service check``: the settings, then one connection to Home Assistant, told plainly.

What a user needs to know before the first deploy: is HA reachable, is the token accepted,
which version, how many entities HA has and how many ``ENTITIES`` exposes (a few names),
whether each ``ALLOWED_SERVICES`` pattern names services HA has, and whether the recorder is
there for the charts. It asks only what the settings need (no service list when no service is
allowed); an answer the settings need and do not get is a problem, one they could do without is a
note, and the run always goes on to the end. Exit status 0 when all is well, 1 with one plain line
per problem otherwise (a bad setting never gets here: ``__main__`` exits 2 for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import is_transient
from .config import Settings
from .filters import EntityPattern
from .ha import messages
from .ha.connection import ENDINGS, AuthInvalid, HAError, NotConnected, open_socket
from .ha.demo import BatteryHome
from .ha.messages import ProtocolError
from .store import numeric_value

__all__ = ["run_check"]

SHOWN = 5
START_WAIT = 60.0  # HA waits for slow integrations up to ~5 minutes, but most starts take seconds


class _Failed(Exception):
    pass


async def run_check(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Print what the check finds; return the exit status."""
    out("settings: OK")
    problems: list[str] = []
    if settings.ha_url is None or settings.ha_token is None:
        out("upstream: no HA_URL set: the service runs the embedded demo Home Assistant")
        _entities(settings, sorted(BatteryHome.ENTITIES), "the demo", out, problems)
    else:
        try:
            await _check(settings, out, problems)
        except _Failed as e:
            problems.append(str(e))
    for problem in problems:
        out(f"problem: {problem}")
    out("check: OK" if not problems else f"check: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    return 0 if not problems else 1


def _entities(
    settings: Settings, ids: list[str], owner: str, out: Callable[[str], None], problems: list[str]
) -> list[str]:
    """Which of ``ids`` ``ENTITIES`` exposes, said; none at all is a problem."""
    exposed = EntityPattern(settings.entities)
    shown = [e for e in ids if exposed(e)]
    names = ", ".join(shown[:SHOWN]) + (", …" if len(shown) > SHOWN else "")
    out(f"entities: {owner} has {len(ids)}, ENTITIES exposes {len(shown)}" + (f": {names}" if shown else ""))
    if not shown:
        which = f"ENTITIES ({','.join(settings.entities)}) matches none of {owner}'s entities"
        problems.append(which if owner == "Home Assistant" else f"{which} ({', '.join(ids)})")
    return shown


def _why(error: BaseException) -> str:
    """A failed connect in words: no errno, no exception class."""
    if isinstance(error, InvalidStatus):
        return f"it answered HTTP {error.response.status_code}, not a WebSocket: is this Home Assistant's port?"
    if isinstance(error, InvalidHandshake):
        return "it did not answer as a WebSocket server: is this Home Assistant's port?"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "no such host"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


async def _check(settings: Settings, out: Callable[[str], None], problems: list[str]) -> None:
    assert settings.ha_url is not None and settings.ha_token is not None
    url, timeout = settings.ha_url, settings.ha_connect_timeout
    try:
        conn = await open_socket(url, connect_timeout=timeout)
    except TimeoutError:
        raise _Failed(f"Home Assistant at {url} did not answer within {timeout:g} s") from None
    except Exception as e:
        if not is_transient(e, ENDINGS):
            raise
        raise _Failed(f"cannot connect to Home Assistant at {url}: {_why(e)}") from None
    reader: asyncio.Task[None] | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                await conn.authenticate(settings.ha_token.reveal())
        except AuthInvalid as e:
            raise _Failed(f"Home Assistant refused HA_TOKEN ({e}); create a long-lived token") from None
        except ProtocolError as e:
            raise _Failed(
                f"{url} does not speak Home Assistant's protocol ({e}): is this Home Assistant's port?"
            ) from None
        out(f"upstream: {url}: Home Assistant {conn.ha_version or 'unknown'}, token accepted")
        reader = asyncio.create_task(conn.read(), name="check-read")

        async def call(build: Callable[[int], dict[str, Any]]) -> Any:
            async with asyncio.timeout(timeout):
                return await conn.request(build)

        try:
            await _wait_until_running(call, out, problems)
        except HAError as e:  # the bridge does without it too: it waits for HA's events instead
            out(f"note: Home Assistant did not say whether it is running ({e.message}); the counts may be short")

        shown: list[str] = []
        try:
            states = await call(lambda i: messages.simple(i, "get_states"))
        except HAError as e:
            states = []
            problems.append(f"Home Assistant did not list its entities ({e.message}); the bridge needs that list")
        else:
            ids = sorted(s["entity_id"] for s in states if isinstance(s, dict) and isinstance(s.get("entity_id"), str))
            shown = _entities(settings, ids, "Home Assistant", out, problems)

        if not settings.services:
            out("services: ALLOWED_SERVICES is empty: commands are off")
        else:
            try:
                services = await call(lambda i: messages.simple(i, "get_services"))
            except HAError as e:
                problems.append(
                    f"Home Assistant did not list its services ({e.message}); ALLOWED_SERVICES is unchecked"
                )
            else:
                known = sorted(f"{d}.{s}" for d, group in services.items() if isinstance(group, dict) for s in group)
                for pattern in settings.services:
                    matching = [name for name in known if EntityPattern([pattern])(name)]
                    if matching:
                        more = ", …" if len(matching) > SHOWN else ""
                        out(f"services: {pattern}: {', '.join(matching[:SHOWN])}{more}")
                    else:
                        problems.append(f"ALLOWED_SERVICES: {pattern} matches no service Home Assistant has")

        numbers = [s["entity_id"] for s in states if s.get("entity_id") in shown and numeric_value(str(s.get("state")))]
        if numbers:
            now = time.time()
            try:
                await call(lambda i: messages.history_during_period(i, now - 3600, now, numbers[:1]))
                out("history: the recorder answers: charts start with the past day")
            except HAError as e:
                out(f"history: no recorder ({e.message}): charts start from what the bridge sees")
    except TimeoutError:
        raise _Failed(f"no answer from Home Assistant within {timeout:g} s") from None
    except (ConnectionClosed, NotConnected) as e:
        raise _Failed(f"Home Assistant closed the connection ({e.__cause__ or e})") from None
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await conn.close()


async def _wait_until_running(
    call: Callable[[Callable[[int], dict[str, Any]]], Awaitable[Any]], out: Callable[[str], None], problems: list[str]
) -> None:
    """A starting HA has not loaded all its entities yet: the counts below would be short."""
    config = await call(lambda i: messages.simple(i, "get_config"))
    state = config.get("state") if isinstance(config, dict) else None
    if not isinstance(state, str) or state == "RUNNING":
        return
    out(f"upstream: Home Assistant is starting (state {state}); waiting up to {START_WAIT:g} s for it to run")
    deadline = time.monotonic() + START_WAIT
    while state != "RUNNING" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        config = await call(lambda i: messages.simple(i, "get_config"))
        state = config.get("state") if isinstance(config, dict) else None
    if state == "RUNNING":
        out("upstream: Home Assistant is running")
    else:
        problems.append(
            f"Home Assistant was still starting (state {state}) after {START_WAIT:g} s: the entity counts may be short"
        )
