"""``sse-service check``: the settings, then one connection to Home Assistant, told plainly.

What a user needs to know before the first deploy: is HA reachable, is the token accepted,
which version, how many entities HA has and how many ``ENTITIES`` exposes (a few names),
whether each ``ALLOWED_SERVICES`` pattern names services HA has, and whether the recorder is
there for the charts. Exit status 0 when all is well, 1 with the reasons otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from .backoff import is_transient
from .config import Settings
from .filters import EntityPattern
from .ha import messages
from .ha.connection import ENDINGS, AuthInvalid, HAError, NotConnected, open_socket
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
    if settings.ha_url is None or settings.ha_token is None:
        out("upstream: no HA_URL set: the service runs the embedded demo Home Assistant; nothing more to check")
        return 0
    problems: list[str] = []
    try:
        await _check(settings, out, problems)
    except _Failed as e:
        problems.append(str(e))
    for problem in problems:
        out(f"problem: {problem}")
    out("check: OK" if not problems else f"check: {len(problems)} problem(s)")
    return 0 if not problems else 1


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
        raise _Failed(f"cannot connect to Home Assistant at {url}: {e}") from None
    reader: asyncio.Task[None] | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                await conn.authenticate(settings.ha_token.reveal())
        except AuthInvalid as e:
            raise _Failed(f"Home Assistant refused HA_TOKEN ({e}); create a long-lived token") from None
        except ProtocolError as e:
            raise _Failed(f"unexpected answer to auth: {e}") from None
        out(f"upstream: {url}: Home Assistant {conn.ha_version or 'unknown'}, token accepted")
        reader = asyncio.create_task(conn.read(), name="check-read")

        async def call(build: Callable[[int], dict[str, Any]]) -> Any:
            async with asyncio.timeout(timeout):
                return await conn.request(build)

        await _wait_until_running(call, out, problems)

        states = await call(lambda i: messages.simple(i, "get_states"))
        exposed = EntityPattern(settings.entities)
        ids = sorted(s["entity_id"] for s in states if isinstance(s, dict) and isinstance(s.get("entity_id"), str))
        shown = [e for e in ids if exposed(e)]
        names = ", ".join(shown[:SHOWN]) + (", …" if len(shown) > SHOWN else "")
        out(f"entities: Home Assistant has {len(ids)}, ENTITIES exposes {len(shown)}" + (f": {names}" if shown else ""))
        if not shown:
            problems.append(f"ENTITIES ({','.join(settings.entities)}) matches none of Home Assistant's entities")

        services = await call(lambda i: messages.simple(i, "get_services"))
        known = sorted(f"{d}.{s}" for d, group in services.items() if isinstance(group, dict) for s in group)
        for pattern in settings.services:
            matching = [name for name in known if EntityPattern([pattern])(name)]
            if matching:
                out(f"services: {pattern}: {', '.join(matching[:SHOWN])}" + (", …" if len(matching) > SHOWN else ""))
            else:
                problems.append(f"ALLOWED_SERVICES: {pattern} matches no service Home Assistant has")
        if not settings.services:
            out("services: ALLOWED_SERVICES is empty: commands are off")

        numbers = [s["entity_id"] for s in states if s.get("entity_id") in shown and numeric_value(str(s.get("state")))]
        if numbers:
            now = time.time()
            try:
                await call(lambda i: messages.history_during_period(i, now - 3600, now, numbers[:1]))
                out("history: the recorder answers: charts start with the past day")
            except HAError as e:
                out(f"history: no recorder ({e}): charts start from what the bridge sees")
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
