"""Scale-out through a real redis-server: several instances, one Home Assistant connection, one log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sse_service.cluster.keys import Keys
from sse_service.cluster.lease import Lease
from sse_service.cluster.log import FencedOut, LogWriter
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.types import UpstreamStatus

from .helpers import LiveServer, live_server, open_stream, settings_for
from .redis_server import RedisServer, redis_server_fixture  # noqa: F401  (the redis_server fixture)

TTL = 1.0


def cluster_settings(ha: DemoHomeAssistant, redis: RedisServer, **overrides: Any) -> Any:
    return settings_for(
        ha,
        redis_url=Secret(redis.url),
        redis_lease_ttl=TTL,
        allowed_services=("switch.*",),
        **overrides,
    )


@contextlib.asynccontextmanager
async def instances(ha: DemoHomeAssistant, redis: RedisServer, count: int = 2) -> AsyncIterator[list[LiveServer]]:
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(live_server(cluster_settings(ha, redis))) for _ in range(count)]
        await wait_for(lambda: sum(role(s) == "leader" for s in servers) == 1)
        yield servers


def role(server: LiveServer) -> str:
    node = server.app.state.cluster
    return str(node.role)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def health(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body: dict[str, Any] = (await client.get(server.url + "/healthz")).json()
        return body


async def test_instances_share_one_upstream_connection_and_the_same_ids(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server, 3) as servers:
        assert ha.connections_total == 1 and len(ha.clients) == 1
        roles = sorted([(await health(s))["cluster"]["role"] for s in servers])
        assert roles == ["follower", "follower", "leader"]
        async with contextlib.AsyncExitStack() as stack:
            streams = [await stack.enter_async_context(open_stream(s.url + "/events")) for s in servers]
            snapshots = [await stream.next() for stream in streams]
            assert {s.event for s in snapshots} == {"snapshot"}
            assert len({s.id for s in snapshots}) == 1, "the same log position everywhere"
            assert snapshots[0].json()["entities"]["sensor.battery_level"]["state"] == "50.0"
            for value in ("51.0", "52.0"):
                ha.set_state("sensor.battery_level", value)
            seen = [
                [await stream.until_state("sensor.battery_level", v) for v in ("51.0", "52.0")] for stream in streams
            ]
            ids = {tuple(e.id for e in events) for events in seen}
            assert len(ids) == 1, ids
            assert {tuple(e.data for e in events) for events in seen} == {tuple(e.data for e in seen[0])}
        assert ha.connections_total == 1


async def test_a_client_resumes_on_another_instance_with_exactly_the_missed_events(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as (a, b):
        async with open_stream(a.url + "/events") as stream:
            await stream.next()
            ha.set_state("sensor.battery_level", "51.0")
            last = await stream.until_state("sensor.battery_level", "51.0")
        ha.set_state("sensor.battery_level", "52.0")
        ha.set_state("switch.charger", "on")
        await wait_for(lambda: b.app.state.hub.store.states["switch.charger"]["state"] == "on")
        assert last.id is not None
        async with open_stream(b.url + "/events", headers={"Last-Event-ID": last.id}) as stream:
            first, second = await stream.next(), await stream.next()
            assert (first.event, first.json()["state"]) == ("state", "52.0")
            assert (second.event, second.json()["entity_id"]) == ("state", "switch.charger")
            ha.set_state("sensor.battery_level", "53.0")
            third = await stream.next()
            assert third.json()["state"] == "53.0", "nothing else in between"


async def test_a_flushed_redis_means_a_new_epoch_and_a_snapshot_not_a_wrong_replay(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as (a, b):
        async with open_stream(b.url + "/events") as stream:
            old = await stream.next()
            epoch = (await health(b))["cluster"]["epoch"]
            async with Redis.from_url(redis_server.url) as redis:
                await redis.flushall()
            await wait_for(lambda: b.app.state.cluster.reader.epoch not in (None, epoch))
            ha.set_state("sensor.battery_level", "49.0")
            after = await stream.until_state("sensor.battery_level", "49.0")
            assert after.id is not None and old.id is not None
            assert after.id.rsplit("-", 1)[0] != old.id.rsplit("-", 1)[0], "ids of the new epoch"
        for server in (a, b):
            async with open_stream(server.url + "/events", headers={"Last-Event-ID": old.id}) as stream:
                fresh = await stream.next()
                assert fresh.event == "snapshot"
                assert fresh.json()["entities"]["sensor.battery_level"]["state"] == "49.0"


async def test_the_other_instance_takes_over_when_the_leader_stops(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with live_server(cluster_settings(ha, redis_server)) as first:
        await wait_for(lambda: role(first) == "leader")
        async with (
            live_server(cluster_settings(ha, redis_server)) as second,
            open_stream(second.url + "/events") as stream,
        ):
            await stream.next()
            assert role(second) == "follower"
            first.server.should_exit = True
            loop = asyncio.get_running_loop()
            stopped = loop.time()
            await wait_for(lambda: role(second) == "leader", timeout=TTL + 3)
            await wait_for(lambda: len(ha.clients) == 1 and second.app.state.cluster.client.connected)
            took = loop.time() - stopped
            assert took < TTL + 2, took
            ha.set_state("sensor.solar_power", "1300")
            await stream.until_state("sensor.solar_power", "1300")
            assert ha.connections_total == 2


async def test_a_stale_leader_cannot_write(redis_server: RedisServer) -> None:
    keys = Keys("fence-test:")
    async with Redis.from_url(redis_server.url, decode_responses=True) as redis:
        old = Lease(redis, keys, ttl=0.2)
        assert await old.acquire()
        assert old.holder is not None
        writer = await LogWriter.open(redis, keys, old.holder, maxlen=100)
        writer.upstream_status(UpstreamStatus.CONNECTED, "up")
        sending = asyncio.create_task(writer.run())
        await wait_for(lambda: writer.appended == 1)
        await asyncio.sleep(0.3)  # the lease expires: the old leader stalled
        new = Lease(redis, keys, ttl=5)
        assert await new.acquire()
        assert new.token > old.token
        assert not await old.renew()
        writer.upstream_changes({"sensor.x": _state("sensor.x", "1")}, [])
        with pytest.raises(FencedOut, match="another instance"):
            await asyncio.wait_for(sending, 2)
        assert await redis.xlen(keys.log) == 1, "the refused write left nothing"
        assert await redis.hlen(keys.states) == 0


def _state(entity_id: str, value: str) -> Any:
    now = "2026-12-01T00:00:00+00:00"
    return {"entity_id": entity_id, "state": value, "attributes": {}, "last_changed": now, "last_updated": now}
