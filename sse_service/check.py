"""``sse-service check``: the settings, then one connection to Home Assistant, told plainly.

What a user needs to know before the first deploy: is HA reachable, is the token accepted,
which version, how many entities HA has and how many ``ENTITIES`` exposes (a few names),
whether each ``ALLOWED_SERVICES`` pattern names services HA has, and whether the recorder is
there for the charts. Exit status 0 when all is well, 1 with the reasons otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from . import __version__
from .config import Settings
from .filters import EntityPattern
from .ha import messages
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
    url = settings.ha_url
    try:
        async with asyncio.timeout(settings.ha_connect_timeout):
            ws = await connect(url, max_size=None, open_timeout=None, user_agent_header=f"sse_service/{__version__}")
    except TimeoutError:
        raise _Failed(f"Home Assistant at {url} did not answer within {settings.ha_connect_timeout:g} s") from None
    except (OSError, InvalidHandshake, InvalidURI) as e:
        raise _Failed(f"cannot connect to Home Assistant at {url}: {e}") from None
    try:
        session = _Session(ws, settings.ha_connect_timeout)
        first = await session.recv()
        version = str(first.get("ha_version") or "unknown")
        await ws.send(json.dumps(messages.auth(settings.ha_token.reveal())))
        reply = await session.recv()
        if reply.get("type") == "auth_invalid":
            raise _Failed(f"Home Assistant refused HA_TOKEN ({reply.get('message')}); create a long-lived token")
        if reply.get("type") != "auth_ok":
            raise _Failed(f"unexpected answer to auth: {reply.get('type')!r}")
        out(f"upstream: {url}: Home Assistant {version}, token accepted")
        await _wait_until_running(session, out, problems)

        states = await session.call(lambda i: messages.simple(i, "get_states"))
        exposed = EntityPattern(settings.entities)
        ids = sorted(s["entity_id"] for s in states if isinstance(s, dict) and isinstance(s.get("entity_id"), str))
        shown = [e for e in ids if exposed(e)]
        names = ", ".join(shown[:SHOWN]) + (", …" if len(shown) > SHOWN else "")
        out(f"entities: Home Assistant has {len(ids)}, ENTITIES exposes {len(shown)}" + (f": {names}" if shown else ""))
        if not shown:
            problems.append(f"ENTITIES ({','.join(settings.entities)}) matches none of Home Assistant's entities")

        services = await session.call(lambda i: messages.simple(i, "get_services"))
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
                await session.call(lambda i: messages.history_during_period(i, now - 3600, now, numbers[:1]))
                out("history: the recorder answers: charts start with the past day")
            except _HAError as e:
                out(f"history: no recorder ({e}): charts start from what the bridge sees")
    except ConnectionClosed as e:
        raise _Failed(f"Home Assistant closed the connection ({e})") from None
    finally:
        await ws.close()


async def _wait_until_running(session: _Session, out: Callable[[str], None], problems: list[str]) -> None:
    """A starting HA has not loaded all its entities yet: the counts below would be short."""
    config = await session.call(lambda i: messages.simple(i, "get_config"))
    state = config.get("state") if isinstance(config, dict) else None
    if not isinstance(state, str) or state == "RUNNING":
        return
    out(f"upstream: Home Assistant is starting (state {state}); waiting up to {START_WAIT:g} s for it to run")
    deadline = time.monotonic() + START_WAIT
    while state != "RUNNING" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        config = await session.call(lambda i: messages.simple(i, "get_config"))
        state = config.get("state") if isinstance(config, dict) else None
    if state == "RUNNING":
        out("upstream: Home Assistant is running")
    else:
        problems.append(
            f"Home Assistant was still starting (state {state}) after {START_WAIT:g} s: the entity counts may be short"
        )


class _HAError(Exception):
    pass


class _Session:
    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.last_id = 0

    async def recv(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                frame = await self.ws.recv()
        except TimeoutError:
            raise _Failed(f"no answer from Home Assistant within {self.timeout:g} s") from None
        message = messages.parse_frame(frame)[0]
        return message

    async def call(self, build: Callable[[int], dict[str, Any]]) -> Any:
        self.last_id += 1
        msg_id = self.last_id
        await self.ws.send(json.dumps(build(msg_id)))
        while True:
            reply = await self.recv()  # no coalescing asked for: one message per frame
            if reply.get("id") == msg_id and reply.get("type") == "result":
                break
        if not reply.get("success"):
            error = reply.get("error") or {}
            raise _HAError(f"{error.get('code')}: {error.get('message')}")
        return reply.get("result")
