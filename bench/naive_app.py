"""The baseline: the textbook SSE fan-out app, deliberately naive (from the ssebench harness).

Starlette + sse-starlette ``EventSourceResponse``, one unbounded ``asyncio.Queue`` per client
and one background task holding a websocket to Home Assistant (here ``fake_ha.py``). The task
``json.loads`` every message and puts ``json.dumps`` of every ``state_changed`` event into every
client's queue; each client's generator takes events off its queue and yields them. A client
asking for ``?entity_id=glob,glob`` or ``?domain=`` gets the textbook filter: its generator
skips the events it does not want.

Run (one worker, httptools, uvloop), as ``bench/run.py`` does:
    HA_URL=ws://127.0.0.1:8123/api/websocket HA_TOKEN=bench-token \
    uvicorn naive_app:app --host 127.0.0.1 --port 8000 --http httptools --loop uvloop --workers 1

SSE endpoint: ``GET /events`` (``event: state_changed``, data: the HA event JSON);
``GET /health`` answers 200 once the upstream subscription is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import websockets
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HA_URL = os.environ.get("HA_URL", "ws://127.0.0.1:8123/api/websocket")
HA_TOKEN = os.environ.get("HA_TOKEN", "bench-token")

clients: set[asyncio.Queue[tuple[str, str]]] = set()
upstream_ok = False


async def upstream() -> None:
    global upstream_ok
    while True:
        try:
            async with websockets.connect(HA_URL, max_size=None) as ws:
                json.loads(await ws.recv())  # auth_required
                await ws.send(json.dumps({"type": "auth", "access_token": HA_TOKEN}))
                msg = json.loads(await ws.recv())
                if msg.get("type") != "auth_ok":
                    raise RuntimeError(f"auth failed: {msg}")
                await ws.send(json.dumps({"id": 1, "type": "subscribe_events", "event_type": "state_changed"}))
                upstream_ok = True
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg.get("type") == "event":
                        event = msg["event"]
                        data = json.dumps(event)
                        entity_id = event["data"]["entity_id"]
                        for q in clients:
                            q.put_nowait((entity_id, data))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # textbook: log and retry
            print(f"upstream error: {e!r}; retrying in 1 s", flush=True)
        upstream_ok = False
        await asyncio.sleep(1)


async def events(request: Request) -> EventSourceResponse:
    globs = [g for g in request.query_params.get("entity_id", "").split(",") if g]
    globs += [f"{d}.*" for d in request.query_params.get("domain", "").split(",") if d]
    q: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    clients.add(q)

    async def gen() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                entity_id, data = await q.get()
                if globs and not any(fnmatch.fnmatchcase(entity_id, g) for g in globs):
                    continue
                yield {"event": "state_changed", "data": data}
        finally:
            clients.discard(q)

    return EventSourceResponse(gen())


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok" if upstream_ok else "no upstream", status_code=200 if upstream_ok else 503)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(upstream())
    yield
    task.cancel()


app = Starlette(routes=[Route("/events", events), Route("/health", health)], lifespan=lifespan)
