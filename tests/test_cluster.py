"""Scale-out through a real redis-server: several instances, one Home Assistant connection, one log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sse_service.cluster import ClusterNode
from sse_service.cluster.keys import Keys
from sse_service.cluster.lease import Lease
from sse_service.cluster.log import FencedOut, LogWriter
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant, ServiceCall, ServiceError
from sse_service.types import UpstreamStatus

from .helpers import LiveServer, live_server, open_stream, settings_for
from .redis_server import RedisServer, redis_server_fixture  # noqa: F401  (the redis_server fixture)
from .samples import sample

TTL = 2.0  # short for quick failovers, long enough for a loaded CI machine


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


def redis_client(server: RedisServer, *, decode_responses: bool = False) -> Redis:
    """The test's own client: a socket timeout, so a Redis going away never hangs a test."""
    return Redis.from_url(server.url, decode_responses=decode_responses, socket_timeout=5, socket_connect_timeout=5)


def node(server: LiveServer) -> ClusterNode:
    assert server.service.cluster is not None, "a cluster member"
    return server.service.cluster


def role(server: LiveServer) -> str:
    return str(node(server).role)


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
        await wait_for(lambda: all(s.service.upstream.ha_version == ha.version for s in servers))
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


async def test_through_redis_no_instance_blinks_an_entity_out_while_ha_is_starting(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as servers, contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(open_stream(s.url + "/events")) for s in servers]
        for stream in streams:
            await stream.next()
        await ha.stop()
        for stream in streams:
            await stream.until(lambda e: e.event == "status" and e.json()["status"] == "disconnected", timeout=10)
        ha.remove_state("light.kitchen")  # really deleted while HA was down
        ha.begin_start(["switch.charger", "sensor.house_load"])
        await ha.start()
        for stream in streams:
            await stream.until(lambda e: e.event == "status" and e.json()["status"] == "starting", timeout=10)
        ha.finish_start()
        for stream in streams:
            seen: list[tuple[str, str]] = []
            while ("status", "connected") not in seen:
                event = await stream.next(timeout=10)
                body = event.json()
                seen.append((event.event, body.get("status") or body["entity_id"]))
            assert [name for kind, name in seen if kind == "remove"] == ["light.kitchen"], seen


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
        await wait_for(lambda: b.service.hub.store.states["switch.charger"]["state"] == "on")
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
            async with redis_client(redis_server) as redis:
                await redis.flushall()
            await wait_for(lambda: node(b).reader.epoch not in (None, epoch))
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
            await wait_for(
                lambda: len(ha.clients) == 1 and (client := node(second).client) is not None and client.connected
            )
            took = loop.time() - stopped
            assert took < 1.0, f"a leader that stops lets go of the lease: {took:.2f} s"
            ha.set_state("sensor.solar_power", "1300")
            await stream.until_state("sensor.solar_power", "1300")
            assert ha.connections_total == 2


async def test_a_stale_leader_cannot_write(redis_server: RedisServer) -> None:
    keys = Keys("fence-test:")
    async with redis_client(redis_server, decode_responses=True) as redis:
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


def follower(servers: list[LiveServer]) -> LiveServer:
    return next(s for s in servers if role(s) == "follower")


async def post(server: LiveServer, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post(path, json=body)


async def test_commands_on_a_follower_are_carried_to_the_leader_and_answered_alike(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async def refuse(call: ServiceCall) -> None:
        raise ServiceError("service_validation_error", "HA says no")

    async def never(call: ServiceCall) -> None:
        await asyncio.sleep(30)

    ha.services[("switch", "refuse")] = refuse
    ha.services[("switch", "slow")] = never
    async with instances(ha, redis_server) as servers:
        other = follower(servers)
        response = await post(other, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
        assert response.status_code == 200, response.text
        assert response.json()["ok"] is True and response.json()["context_id"]
        assert ha.service_calls[-1].entity_ids == ["switch.charger"]
        await wait_for(lambda: other.service.hub.store.states["switch.charger"]["state"] == "on")
        response = await post(other, "/api/services/switch/refuse", {"entity_id": "switch.charger"})
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "ha_service_validation_error",
            "message": "Home Assistant refused the call: HA says no",
        }
        response = await post(other, "/api/services/light/turn_on", {"entity_id": "light.kitchen"})
        assert response.status_code == 403, "checked on the follower, never sent"
        calls = len(ha.service_calls)
        assert calls == 2
        assert (await health(other))["cluster"]["commands_forwarded"] == 2


async def test_a_follower_answers_504_when_the_leader_does_not_answer_in_time(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async def never(call: ServiceCall) -> None:
        await asyncio.sleep(30)

    ha.services[("switch", "slow")] = never
    async with contextlib.AsyncExitStack() as stack:
        settings = cluster_settings(ha, redis_server, command_timeout=0.5)
        servers = [await stack.enter_async_context(live_server(settings)) for _ in range(2)]
        await wait_for(lambda: sum(role(s) == "leader" for s in servers) == 1)
        response = await post(follower(servers), "/api/services/switch/slow", {"entity_id": "switch.charger"})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "upstream_timeout"


async def test_redis_lost_and_back_empty_streams_stay_open_and_end_with_the_current_state(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as servers:
        async with contextlib.AsyncExitStack() as stack:
            streams = [await stack.enter_async_context(open_stream(s.url + "/events")) for s in servers]
            for stream in streams:
                await stream.next()
            redis_server.stop()
            for stream in streams:
                status = await stream.until(lambda e: e.event == "status", timeout=5)
                # The stream says Redis is the link that is down, and where it goes stays private.
                assert status.json()["status"] == "disconnected"
                assert status.json()["reason"] == "Redis is unreachable: the data may be stale"
                assert status.json()["cause"] == "redis", "a page tells which link is down without reading the reason"
                assert str(redis_server.port) not in status.data
            for server in servers:
                body = await health(server)
                assert body["cluster"]["redis"] == "unreachable"
                assert body["upstream"]["reason"].startswith("Redis is unreachable")
                assert body["upstream"]["cause"] == "redis"
                assert body["cluster"]["redis_error"], "the error itself is in /healthz"
                async with httpx.AsyncClient() as client:
                    ready = await client.get(server.url + "/readyz")
                assert ready.status_code == 503 and ready.json()["error"]["code"] == "redis_unavailable"
            await wait_for(lambda: not ha.clients, timeout=5)  # the leader could not renew: it let go of HA
            ha.set_state("sensor.battery_level", "42.0")  # while nobody leads
            redis_server.start()  # empty: a new epoch
            for stream in streams:
                await stream.until_state("sensor.battery_level", "42.0", timeout=10)
                back = await stream.until(
                    lambda e: e.event == "status" and e.json()["status"] == "connected", timeout=5
                )
                assert back.json()["cause"] == "home_assistant"
            ha.set_state("sensor.battery_level", "43.0")
            ids = {(await stream.until_state("sensor.battery_level", "43.0")).id for stream in streams}
            assert len(ids) == 1
        assert len(ha.clients) == 1
        for server in servers:
            assert (await health(server))["cluster"]["redis"] == "connected"


async def test_redis_restarted_with_its_data_is_caught_up_from_the_last_id(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as (a, b):
        async with open_stream(b.url + "/events") as stream:
            await stream.next()
            ha.set_state("sensor.battery_level", "51.0")
            before = await stream.until_state("sensor.battery_level", "51.0")
            async with redis_client(redis_server) as redis:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await redis.shutdown(save=True)
            redis_server.stop()
            redis_server.start()  # loads dump.rdb from its dir: the same epoch
            ha.set_state("sensor.battery_level", "52.0")
            after = await stream.until_state("sensor.battery_level", "52.0", timeout=10)
            assert before.id is not None and after.id is not None
            assert after.id.rsplit("-", 1)[0] == before.id.rsplit("-", 1)[0], "the log survived: same epoch"
        async with open_stream(a.url + "/events", headers={"Last-Event-ID": before.id}) as resumed:
            first = await resumed.next()
            if first.event == "snapshot":  # a started over when Redis came back, before 52.0
                assert first.json()["entities"]["sensor.battery_level"]["state"] == "52.0"
            else:  # a replays from its ring: what came after, 52.0 among it
                missed = [first]
                while not (missed[-1].event == "state" and missed[-1].json()["state"] == "52.0"):
                    missed.append(await resumed.next())
                assert {e.event for e in missed} <= {"state", "status"}


async def test_a_late_follower_starts_from_the_log_and_serves_filtered_streams(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server, 1) as (first,):
        ha.set_state("sensor.battery_level", "60.0")
        ha.remove_state("light.kitchen")
        await wait_for(lambda: "light.kitchen" not in first.service.hub.store.states)
        async with (
            live_server(cluster_settings(ha, redis_server)) as late,
            open_stream(late.url + "/events?domain=sensor") as stream,
            open_stream(first.url + "/events?domain=sensor") as reference,
        ):
            snapshot, expected = await stream.next(), await reference.next()
            assert snapshot.id == expected.id
            assert snapshot.json()["entities"] == expected.json()["entities"]
            history = snapshot.json()["history"]
            assert history == expected.json()["history"], "the numeric history comes from Redis too"
            assert [point[1] for point in history["sensor.battery_level"]] == [50.0, 60.0]
            assert set(snapshot.json()["entities"]) == {
                "sensor.battery_level",
                "sensor.solar_power",
                "sensor.house_load",
            }
            ha.set_state("switch.charger", "on")
            ha.set_state("sensor.house_load", "700")
            event = await stream.next()
            assert (event.event, event.json()["entity_id"]) == ("state", "sensor.house_load")
            assert event.id == (await reference.next()).id
        assert ha.connections_total == 1


async def test_a_client_that_moves_to_an_instance_behind_the_log_gets_no_older_view(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    async with instances(ha, redis_server) as (a, b):
        reader = node(b).reader
        read = reader._xread

        async def late() -> Any:  # b reads the log 0.5 s behind a
            reply = await read()
            await asyncio.sleep(0.5)
            return reply

        setattr(reader, "_xread", late)  # noqa: B010  (a method replaced for this test)
        ha.set_state("sensor.battery_level", "70.0")  # ends the read that was waiting already
        await wait_for(lambda: b.service.hub.store.states["sensor.battery_level"]["state"] == "70.0")
        async with open_stream(a.url + "/events") as stream:
            await stream.next()
            ha.set_state("sensor.battery_level", "71.0")
            seen = await stream.until_state("sensor.battery_level", "71.0")
        assert seen.id is not None and b.service.hub.store.states["sensor.battery_level"]["state"] != "71.0"
        async with open_stream(b.url + "/events", headers={"Last-Event-ID": seen.id}) as moved:
            ha.set_state("sensor.battery_level", "72.0")
            first = await moved.next()
            # Not b's older snapshot (and 71.0 again after it): b waited until it had made seen.id.
            assert (first.event, first.json().get("state")) == ("state", "72.0")
            assert b.service.hub.snapshots == 0


async def test_a_client_resumes_on_an_instance_that_started_after_it_left(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    # A rolling deploy: the client's instance goes, and the one it reconnects to is new.
    async with instances(ha, redis_server, 1) as (first,):
        async with open_stream(first.url + "/events") as stream:
            await stream.next()
            ha.set_state("sensor.battery_level", "61.0")
            last = await stream.until_state("sensor.battery_level", "61.0")
        ha.set_state("sensor.battery_level", "62.0")
        ha.remove_state("light.kitchen")
        await ha.stop()  # HA restarts meanwhile: status events are in what it missed
        await wait_for(lambda: first.service.hub.status is UpstreamStatus.DISCONNECTED)
        await ha.start()
        await wait_for(lambda: first.service.hub.status is UpstreamStatus.CONNECTED)
        ha.set_state("switch.charger", "on")
        await wait_for(lambda: first.service.hub.store.states["switch.charger"]["state"] == "on")
        assert last.id is not None
        async with (
            live_server(cluster_settings(ha, redis_server)) as late,
            open_stream(late.url + "/events", headers={"Last-Event-ID": last.id}) as moved,
            open_stream(first.url + "/events", headers={"Last-Event-ID": last.id}) as stayed,
        ):
            missed = [await moved.next() for _ in range(5)]
            expected = [await stayed.next() for _ in range(5)]
            assert [(e.event, e.id, e.data) for e in missed] == [(e.event, e.id, e.data) for e in expected]
            assert [e.event for e in missed] == ["state", "remove", "status", "status", "state"]
            assert [e.json().get("status") for e in missed[2:4]] == ["disconnected", "connected"]
            assert late.service.hub.replays == 1 and late.service.hub.snapshots == 0
            ha.set_state("sensor.battery_level", "63.0")
            assert (await moved.next()).json()["state"] == "63.0", "nothing else in between"


async def test_the_redis_password_never_shows(ha: DemoHomeAssistant, tmp_path: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="sse_service.cluster")
    password = "s3cret-redis-pass-0123456789"
    server = RedisServer(tmp_path)
    server.start()
    try:
        async with redis_client(server) as redis:
            await redis.config_set("requirepass", password)
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        settings = settings_for(ha, redis_url=Secret(url), redis_lease_ttl=TTL)
        assert password in settings.secrets()
        assert password not in repr(settings)
        async with live_server(settings) as live:
            await wait_for(lambda: role(live) == "leader")
            async with httpx.AsyncClient() as client:
                for path in ("/healthz", "/readyz", "/metrics"):
                    assert password not in (await client.get(live.url + path)).text
            server.stop()
            await wait_for(lambda: (node(live).reader.error or "") != "", timeout=5)
            async with httpx.AsyncClient() as client:
                for path in ("/healthz", "/readyz", "/metrics"):
                    assert password not in (await client.get(live.url + path)).text
    finally:
        server.stop()
    assert all(password not in record.getMessage() for record in caplog.records)
    assert f"through Redis at redis://127.0.0.1:{server.port}/0 " in caplog.text, "where, without the password"


def test_without_redis_url_redis_is_never_imported() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sse_service.app import create_app\n"
        "from sse_service.config import Settings\n"
        "from sse_service.service import Service\n"
        "create_app(Service(Settings()))\n"
        "assert not any(m == 'redis' or m.startswith('redis.') for m in sys.modules), 'redis imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://h:1", "expected a redis://, rediss:// or unix:// URL"),
        ("redis://:pw@", "has no host"),
        ("redis://:pw@h:99999", "is not a valid URL"),
        ("unix://", "has no socket path"),
    ],
)
def test_a_bad_redis_url_is_refused_without_echoing_it(raw: str, problem: str) -> None:
    from sse_service.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL": raw})
    assert problem in str(caught.value)
    assert "pw" not in str(caught.value)


def test_redis_urls_that_are_accepted() -> None:
    from sse_service.config import load_settings

    for raw in ("redis://localhost", "rediss://:p@redis.example:6380/2", "unix:///run/redis/redis.sock"):
        settings = load_settings({"REDIS_URL": raw})
        assert settings.redis_url is not None and settings.redis_url.reveal() == raw


async def test_the_command_rate_holds_for_the_cluster(ha: DemoHomeAssistant, redis_server: RedisServer) -> None:
    async with contextlib.AsyncExitStack() as stack:
        settings = cluster_settings(ha, redis_server, command_rate=0.01, command_burst=4)
        servers = [await stack.enter_async_context(live_server(settings)) for _ in range(2)]
        await wait_for(lambda: all(node(s).members == 2 for s in servers))
        toggle = {"entity_id": "switch.charger"}
        # An address that sticks to one instance gets the whole burst, not a share of it ...
        codes = [(await post(servers[0], "/api/services/switch/toggle", toggle)).status_code for _ in range(4)]
        assert codes == [200] * 4
        # ... and it is spent on every instance: one bucket for the cluster, not one per instance.
        for server in servers:
            refused = await post(server, "/api/services/switch/toggle", toggle)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) > 5000  # 0.01 a minute: one token in 6000 s
        assert len(ha.service_calls) == 4
        async with httpx.AsyncClient() as client:
            text = (await client.get(servers[0].url + "/metrics")).text
        assert "sse_cluster_members 2.0" in text and "sse_cluster_leader " in text
        async with redis_client(redis_server, decode_responses=True) as redis:
            ttl = await redis.pttl(Keys().rate("127.0.0.1"))
        assert 0 < ttl <= (4 / (0.01 / 60) + 1) * 1000  # a bucket is forgotten once it would be full


async def test_kill_9_the_leader_and_a_follower_takes_over(ha: DemoHomeAssistant, redis_server: RedisServer) -> None:
    env = {
        "HA_URL": ha.url,
        "HA_TOKEN": ha.token,
        "REDIS_URL": redis_server.url,
        "REDIS_LEASE_TTL": str(TTL),
        "HA_BACKOFF_MAX": "0.2",
        "LOG_LEVEL": "warning",
    }
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(_process(env)) for _ in range(2)]
        async with httpx.AsyncClient() as client:

            async def cluster_of(url: str) -> dict[str, Any]:
                body: dict[str, Any] = (await client.get(url + "/healthz")).json()["cluster"]
                return body

            async with asyncio.timeout(10):
                while sorted([(await cluster_of(url))["role"] for _, url in procs]) != ["follower", "leader"]:
                    await asyncio.sleep(0.05)
            roles = [(await cluster_of(url))["role"] for _, url in procs]
            leader, other = (procs[0], procs[1]) if roles[0] == "leader" else (procs[1], procs[0])
            async with open_stream(other[1] + "/events") as stream:
                await stream.next()
                leader[0].kill()  # SIGKILL: no release of the lease, no goodbye to HA
                await leader[0].wait()
                loop = asyncio.get_running_loop()
                killed = loop.time()
                await wait_for(lambda: not ha.clients)
                ha.remove_state("light.kitchen")  # while nobody leads: the new leader's snapshot says so
                ha.set_state("sensor.house_load", "900")
                async with asyncio.timeout(10):
                    while (await cluster_of(other[1]))["role"] != "leader" or ha.connections_total < 2:
                        await asyncio.sleep(0.05)
                    while len(ha.clients) != 1:  # the dead leader's socket is gone, the new one is in
                        await asyncio.sleep(0.05)
                corrections: list[tuple[str, str]] = []
                async with asyncio.timeout(5):
                    while not {("remove", "light.kitchen"), ("state", "900")} <= set(corrections):
                        event = await stream.next()
                        corrections.append((event.event, event.json().get("state", event.json().get("entity_id"))))
                ha.set_state("sensor.solar_power", "1500")
                await stream.until_state("sensor.solar_power", "1500")
                took = loop.time() - killed
                print(f"failover after kill -9: {took:.2f} s (lease TTL {TTL:g} s)")
                assert took < 5, f"failover took {took:.1f} s"


@contextlib.asynccontextmanager
async def _process(env: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    import os
    import sys

    from .helpers import free_port

    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "CONFIG_FILE", "REDIS_URL")}
    environ.update(PORT=str(port), HOST="127.0.0.1", **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_service", env=environ, stderr=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(15):
            while True:
                try:
                    if (await client.get(url + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            finally:
                if proc.returncode is None:  # never leave one behind, even when its shutdown hangs
                    proc.kill()
                    await proc.wait()


async def test_the_recorders_history_reaches_every_instance_and_late_joiners(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    import time

    ha.record("sensor.battery_level", time.time() - 3600, "40.0")
    ha.record("sensor.battery_level", time.time() - 1800, "45.0")

    def past(server: LiveServer) -> list[float]:
        series = server.service.hub.store.history.get("sensor.battery_level")
        return [p[1] for p in series.points] if series is not None else []

    async with instances(ha, redis_server) as servers:
        for server in servers:
            await wait_for(lambda s=server: past(s)[:2] == [40.0, 45.0])
        async with live_server(cluster_settings(ha, redis_server)) as late, open_stream(late.url + "/events") as stream:
            snapshot = (await stream.next()).json()
            assert [p[1] for p in snapshot["history"]["sensor.battery_level"]][:2] == [40.0, 45.0]
        assert ha.connections_total == 1


async def test_a_relayed_command_without_a_leader_is_refused_at_once(redis_server: RedisServer) -> None:
    from sse_service.cluster.relay import Relay
    from sse_service.ha.client import NotConnected

    keys = Keys("relay-test:")
    async with redis_client(redis_server, decode_responses=True) as redis:
        relay = Relay(redis, redis, keys, timeout=5)
        with pytest.raises(NotConnected, match="no instance holds the connection"):
            async with asyncio.timeout(1):
                await relay.ask("call_service", {"domain": "switch", "service": "turn_on"})
        assert await redis.llen(keys.requests) == 0, "nothing left for a later leader to act on"


async def test_a_relayed_command_nobody_takes_is_refused_before_the_timeout(redis_server: RedisServer) -> None:
    from sse_service.cluster.relay import Relay
    from sse_service.ha.client import NotConnected

    keys = Keys("relay-test:")
    async with redis_client(redis_server, decode_responses=True) as redis:
        await redis.set(keys.lease, "a-dead-leader:1", px=10_000)  # killed: its lease has not expired yet
        relay = Relay(redis, redis, keys, timeout=2.0)  # gives up at 1.75 s: slack for a loaded CI machine
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NotConnected, match="no instance took the call within 2 s"):
            async with asyncio.timeout(2.0):
                await relay.ask("call_service", {"domain": "switch", "service": "turn_on"})
        assert loop.time() - started < 2.0


async def test_every_reader_numbers_the_writers_batches_alike(redis_server: RedisServer, caplog: Any) -> None:
    """Tricky batches (no-op, remove and re-add at once, attribute-only, unknown removal, status, history)."""
    from datetime import datetime

    from sse_service.cluster.log import LogReader
    from sse_service.hub import Hub

    keys = Keys("numbers-test:")
    async with redis_client(redis_server, decode_responses=True) as redis:
        lease = Lease(redis, keys, ttl=30)
        assert await lease.acquire() and lease.holder is not None
        writer = await LogWriter.open(redis, keys, lease.holder, maxlen=100)
        sending = asyncio.create_task(writer.run())
        a, b = _state("sensor.a", "1"), _state("sensor.b", "x")
        writer.upstream_snapshot({"sensor.a": a, "sensor.b": b})
        hub = Hub()
        reader = LogReader(redis, redis, keys, hub, block=0.2)
        reading = asyncio.create_task(reader.run())
        try:
            batches: list[tuple[dict[str, Any], list[str]]] = [
                ({"sensor.a": a}, []),  # nothing new
                ({"sensor.b": {**b, "attributes": {"unit": "W"}}}, []),  # attributes only
                ({"sensor.a": _state("sensor.a", "2")}, ["sensor.a"]),  # removed and back in one batch
                ({}, ["sensor.ghost"]),  # unknown
                ({"sensor.c": _state("sensor.c", "3"), "sensor.a": _state("sensor.a", "2")}, ["sensor.b"]),
            ]
            for updated, removed in batches:
                writer.upstream_changes(updated, removed)
            writer.upstream_status(UpstreamStatus.DISCONNECTED, "gone")
            earlier = datetime.fromisoformat(_state("sensor.c", "")["last_updated"]).timestamp() - 60
            writer.upstream_history({"sensor.c": [(earlier, 2.0)]})
            writer.upstream_snapshot({"sensor.c": _state("sensor.c", "4")})
            await wait_for(
                lambda: hub.store.states.keys() == {"sensor.c"} and hub.store.states["sensor.c"]["state"] == "4"
            )
            meta = await redis.hgetall(keys.meta)
            assert hub.seq == int(meta["seq"]) and hub.epoch == meta["epoch"]
            assert hub.status is UpstreamStatus.DISCONNECTED
            assert [p[1] for p in hub.store.history["sensor.c"].points] == [2.0, 3.0, 4.0]
            assert json_of(await redis.hgetall(keys.states)) == {"sensor.c": hub.store.states["sensor.c"]}
            assert reader.resyncs == 1, "never out of step"
            assert "renumbered" not in caplog.text
        finally:
            for task in (sending, reading):
                task.cancel()
            await asyncio.gather(sending, reading, return_exceptions=True)


def json_of(flat: Any) -> dict[str, Any]:
    import json

    return {key: json.loads(value) for key, value in flat.items()}


async def test_an_entry_that_is_not_the_scripts_is_skipped(
    ha: DemoHomeAssistant, redis_server: RedisServer, caplog: Any
) -> None:
    async with instances(ha, redis_server) as servers, open_stream(servers[1].url + "/events") as stream:
        await stream.next()
        hub = servers[1].service.hub
        async with redis_client(redis_server, decode_responses=True) as redis:
            fields = {"epoch": hub.epoch, "seq": hub.seq + 1, "n": 1, "kind": "status", "data": '{"status": "bogus"}'}
            await redis.xadd("sse:log", fields)  # type: ignore[arg-type]
            await redis.xadd("sse:log", {"junk": "1"})
        ha.set_state("sensor.battery_level", "55.0")
        for server in servers:
            await wait_for(lambda s=server: s.service.hub.store.states["sensor.battery_level"]["state"] == "55.0")
        await stream.until_state("sensor.battery_level", "55.0")
        resyncs = [node(s).reader.resyncs for s in servers]
        await asyncio.sleep(1.5)  # a few quiet reads: none starts over again
        assert [node(s).reader.resyncs for s in servers] == resyncs
        assert all(r <= 3 for r in resyncs), resyncs
    assert "Malformed status entry" in caplog.text


async def test_all_cores_behind_nginx_a_client_moves_to_the_other_process_and_resumes(
    ha: DemoHomeAssistant, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' recipe (docs/scaling.md): the nginx config with its cluster upstream, one server per instance."""
    from . import test_nginx

    async with contextlib.AsyncExitStack() as stack:
        each = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
        for one in each:
            stack.push_async_callback(one.aclose)  # a second aclose does nothing
        a, b = [await one.enter_async_context(live_server(cluster_settings(ha, redis_server))) for one in each]
        plain, secure = test_nginx.docs_nginx_configs()
        # The docs' four processes become two: nginx() puts a's port where the config says 8000.
        upstream = sample("nginx-cluster-upstream").replace("  # in the nginx config above", "")
        upstream = upstream.replace("127.0.0.1:8001;", "127.0.0.1:8000;").replace(
            "127.0.0.1:8002;", f"127.0.0.1:{b.port};"
        )
        upstream = "".join(line for line in upstream.splitlines(True) if ":8003;" not in line and ":8004;" not in line)
        both, replaced = re.subn(r"upstream sse_service \{.*?\}\n", lambda _: upstream, plain, flags=re.S)
        assert replaced == 1 and f"127.0.0.1:{b.port};" in both
        monkeypatch.setattr(test_nginx, "docs_nginx_configs", lambda: (both, secure))
        port = stack.enter_context(test_nginx.nginx(tmp_path, a.port))
        url = f"http://127.0.0.1:{port}/events"
        async with open_stream(url) as stream:
            await stream.next()
            ha.set_state("sensor.battery_level", "61.0")
            seen = await stream.until_state("sensor.battery_level", "61.0")
            serving = 0 if a.service.hub.client_count else 1
        assert seen.id is not None
        other = (a, b)[1 - serving]
        ha.set_state("sensor.battery_level", "62.0")  # missed by that client
        await wait_for(lambda: other.service.hub.store.states["sensor.battery_level"]["state"] == "62.0")
        await each[serving].aclose()  # the process it was on goes away (the leader, or not)
        for _ in range(2):  # whichever way nginx turns, the stream lands on the one still up
            async with open_stream(url, headers={"Last-Event-ID": seen.id}) as resumed:
                event = await resumed.next()
                assert (event.event, event.json()["state"]) == ("state", "62.0"), "exactly what it missed"
        await wait_for(lambda: role(other) == "leader")  # it was, or took over from the one that went


async def test_a_log_that_went_back_gets_a_new_epoch_never_reused_ids(
    ha: DemoHomeAssistant, redis_server: RedisServer
) -> None:
    """A failover to a replica without the last writes: the same epoch, a lower seq."""
    async with instances(ha, redis_server) as servers, open_stream(servers[1].url + "/events") as stream:
        await stream.next()
        async with redis_client(redis_server) as redis:
            names = ["sse:meta", "sse:states", "sse:history", "sse:log"]
            saved = {name: await redis.dump(name) for name in names}  # the replica, two writes behind
            ha.set_state("sensor.battery_level", "70.0")
            ha.set_state("sensor.battery_level", "71.0")
            last = await stream.until_state("sensor.battery_level", "71.0")
            for name, value in saved.items():
                if value is not None:
                    await redis.restore(name, 0, value, replace=True)
        ha.set_state("sensor.solar_power", "999")  # the leader's next write lands on the old seq
        await stream.until_state("sensor.solar_power", "999", timeout=10)
        for server in servers:
            await wait_for(lambda s=server: s.service.hub.store.states["sensor.battery_level"]["state"] == "71.0")
        assert last.id is not None
        for server in servers:
            assert server.service.hub.epoch != last.id.rsplit("-", 1)[0], "a new epoch"
            async with open_stream(server.url + "/events", headers={"Last-Event-ID": last.id}) as resumed:
                assert (await resumed.next()).event == "snapshot", "never a replay under reused ids"
