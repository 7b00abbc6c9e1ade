"""One instance's membership of the cluster: election, leadership, following the log, health.

Every instance follows the log (log.LogReader) and tries to take the lease every
``ttl / 6`` (lease.py). The one that holds it opens the log (log.LogWriter), runs the
HAClient with the writer as its sink, answers relayed requests (relay.py), and renews the
lease every ``ttl / 3``. When a renewal fails, or cannot be confirmed before the lease would
expire (minus a margin for clock drift), it stops at once: the HA connection is cancelled,
and the writes still queued are refused by the log's script anyway (fencing).

::

    follower ──acquire──▶ leader: open log ─▶ HAClient(sink=writer) + writer + relay server
       ▲                     │ renew every ttl/3
       └──── renew failed / late / fenced / HA task ended: cancel all, release the lease
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..access import RateLimiter
from ..backoff import doubling
from ..config import Settings
from ..ha.client import HAClient, UpstreamSink
from ..hub import Hub
from ..store import EntityStore
from .keys import Keys
from .lease import Lease
from .log import FencedOut, LogReader, LogWriter, describe_redis_error
from .metrics import ClusterCollector
from .rate import SharedRateLimiter
from .relay import Relay

__all__ = ["ClusterNode", "ClusterUpstream"]

log = logging.getLogger("sse_service.cluster")

BLOCK = 1.0  # seconds a blocking read waits before it checks in


class ClusterNode:
    """This instance in the cluster. ``upstream`` stands in for the HAClient in the routes."""

    def __init__(self, settings: Settings, hub: Hub, connect_upstream: Callable[[UpstreamSink], HAClient]) -> None:
        assert settings.redis_url is not None
        self._url = settings.redis_url
        self._settings = settings
        self._hub = hub
        self._connect_upstream = connect_upstream
        self._keys = Keys(settings.redis_prefix)
        self.ttl = settings.redis_lease_ttl
        self.role = "follower"
        self.client: HAClient | None = None  # while leader
        self.leader_changes = 0  # leaderships this instance saw begin (its own included)
        self.upstream = ClusterUpstream(self)
        self._seen_leader: str | None = None
        # Clients connect on first use (in run), and are closed when it ends.
        self._redis = self._client(min(2.0, self.ttl / 3))
        # Blocking reads (XREAD BLOCK, BLPOP) wait longer than a plain call: their socket
        # timeout must exceed the block (redis-py raises a timeout otherwise, redis-py#2807),
        # and stay short enough that a half-open connection is noticed soon.
        self._reads = self._client(BLOCK + 2)
        self._blocking = self._client(max(BLOCK, settings.command_timeout + 1) + 2)
        self.lease = Lease(self._redis, self._keys, self.ttl)
        self.reader = LogReader(self._redis, self._reads, self._keys, hub, block=BLOCK)
        self.relay = Relay(self._redis, self._blocking, self._keys, timeout=settings.command_timeout)

    def _client(self, socket_timeout: float) -> Redis:
        # One retry on a fresh connection (a pooled one may be dead after a Redis restart), no
        # backoff: the loops here have their own, and must notice an outage within the TTL.
        return Redis.from_url(
            self._url.reveal(),
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=min(2.0, self.ttl / 3),
            retry=Retry(NoBackoff(), 1),
        )

    async def run(self) -> None:
        """Follow the log and take part in elections until cancelled."""
        where, prefix = display_url(self._url.reveal()), self._keys.prefix
        log.info(
            "Cluster member %s through Redis at %s (prefix %r, lease %.1f s)", self.instance, where, prefix, self.ttl
        )
        tasks = [
            asyncio.create_task(self.reader.run(), name="cluster-reader"),
            asyncio.create_task(self._elect(), name="cluster-election"),
        ]
        try:
            # Not gather: cancelled, it would cancel them too, and the cancel below would then
            # land a second time, inside the leader's clean-up (no lease release, slow failover).
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # they run until cancelled: one that ended has crashed
        finally:
            await stop(tasks)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._redis.zrem(self._keys.members, self.instance)
            for client in (self._redis, self._reads, self._blocking):
                await client.aclose()

    def rate_limiter(self, local: RateLimiter) -> SharedRateLimiter:
        """``local``'s rate and burst, for the whole cluster (one bucket per address in Redis)."""
        return SharedRateLimiter(local, self._redis, self._keys)

    def collector(self) -> ClusterCollector:
        """Its metrics, for the app's registry."""
        return ClusterCollector(self.describe)

    @property
    def members(self) -> int:
        """Instances seen recently (their heartbeats in the members set), as the last tick read it."""
        return self.lease.members

    @property
    def instance(self) -> str:
        return self.lease.instance

    @property
    def redis_ok(self) -> bool:
        return self.reader.connected

    def describe(self) -> dict[str, Any]:
        """For /healthz."""
        reader, relay, lease = self.reader, self.relay, self.lease
        return {
            "role": self.role,
            "members": self.members,
            "instance": self.instance,
            "redis": "connected" if self.redis_ok else "unreachable",
            "redis_error": reader.error,
            "epoch": reader.epoch,
            "lag": reader.lag,
            "resyncs": reader.resyncs,
            "leader_changes": self.leader_changes,
            "fencing_token": lease.token if self.role == "leader" else None,
            "commands_forwarded": relay.forwarded,
            "commands_served": relay.served,
        }

    # --- election ----------------------------------------------------------------------

    async def _elect(self) -> None:
        lease = self.lease
        delays = doubling(0.1, 2.0)
        while True:
            try:
                taken = await lease.acquire()
                self._saw_leader(lease.seen)
                if taken:
                    await self._lead()
                delays = doubling(0.1, 2.0)
                await asyncio.sleep(self.ttl / 6)
            except (RedisError, OSError) as e:
                log.debug("Election: Redis unreachable (%s)", describe_redis_error(e))
                await asyncio.sleep(next(delays))
            except Exception:  # a bug, or data in Redis that is not ours: never end the membership
                log.exception("Election failed; trying again in 2 s")
                await asyncio.sleep(2.0)

    def _saw_leader(self, holder: str | None) -> None:
        if holder is not None and holder != self._seen_leader:
            self.leader_changes += 1
        self._seen_leader = holder

    async def _lead(self) -> None:
        lease, relay = self.lease, self.relay
        assert lease.holder is not None
        loop = asyncio.get_running_loop()
        expires = loop.time() + self.ttl  # at the latest: the SET was sent before now
        tasks: list[asyncio.Task[None]] = []
        reason = "shutting down"
        version_said: str | None = None
        try:
            maxlen = max(self._settings.replay_buffer, 100)
            hub_store = self._hub.store
            store = EntityStore(history_size=hub_store.history_size, history_window=hub_store.history_window)
            writer = await LogWriter.open(self._redis, self._keys, lease.holder, maxlen=maxlen, store=store)
            client = self.client = self._connect_upstream(writer)
            self.role = "leader"
            log.info(
                "This instance leads the cluster (fencing token %d, epoch %s): it holds the connection to %s",
                lease.token,
                writer.epoch,
                client.display_url,
            )
            tasks = [
                asyncio.create_task(client.run(), name="upstream"),
                asyncio.create_task(writer.run(), name="cluster-writer"),
                asyncio.create_task(relay.serve(client), name="cluster-relay"),
            ]
            margin = self.ttl / 6
            while True:
                done, _ = await asyncio.wait(tasks, timeout=self.ttl / 3, return_when=asyncio.FIRST_COMPLETED)
                if done:
                    error = next(iter(done)).exception()
                    reason = describe_redis_error(error) if error is not None else "a task ended"
                    if error is not None and not isinstance(error, RedisError | OSError | FencedOut):
                        log.error("A task of the leader failed", exc_info=error)
                    break
                started = loop.time()
                try:
                    async with asyncio.timeout(max(0.01, expires - margin - started)):
                        renewed = await lease.renew()
                except (TimeoutError, RedisError, OSError) as e:
                    reason = f"cannot renew the lease in time ({describe_redis_error(e)})"
                    break
                if not renewed:
                    reason = "the lease was lost (expired or taken)"
                    break
                expires = started + self.ttl
                if lease.log_epoch != writer.epoch:
                    # A reader found the log went back and started a new epoch (log.py), or
                    # Redis lost it: start over from the hashes, with a fresh snapshot from HA.
                    reason = "the log has a new epoch"
                    break
                if client.ha_version is not None and client.ha_version != version_said:
                    with contextlib.suppress(RedisError, OSError):  # for the followers' /healthz
                        await self._redis.hset(self._keys.meta, "ha_version", client.ha_version)
                        version_said = client.ha_version
        except FencedOut as e:
            reason = str(e)
        finally:
            await stop(tasks)
            was_leader = self.role == "leader"
            self.client = None
            self.role = "follower"
            if was_leader:
                level = logging.INFO if reason == "shutting down" else logging.WARNING
                log.log(level, "This instance stops leading: %s; the Home Assistant connection is closed", reason)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(0.5):
                    await lease.release()
            lease.holder = None


async def stop(tasks: Sequence[asyncio.Task[None]], *, patience: float = 1.0) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that swallowed it.

    A cancellation that lands inside a redis-py call can be lost (seen in tests: the writer
    went back to its queue, and shutdown waited for ever); a second one gets through. The
    cause: with a socket timeout, redis-py sends through ``asyncio.wait_for``, which on Python
    3.10 and 3.11 swallows a cancellation that arrives in the tick its inner task completes
    (python/cpython#86296; 3.12 rewrote it). The log's loops no longer send that way (wire.py);
    the lease, relay and rate calls still do.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(5):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
    if pending:
        log.error("Tasks that would not stop: %s", ", ".join(sorted(task.get_name() for task in pending)))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: nothing to report, they were stopped


def display_url(url: str) -> str:
    """The Redis URL for logs: no user, no password, no query."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class ClusterUpstream:
    """``app.state.upstream`` in a cluster: the HAClient while leading, a relay to the leader otherwise.

    Duck-typed as the HAClient the routes use (``call_service``, ``history``, ``retry_in``
    and the fields of /healthz and /metrics).
    """

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    @property
    def _local(self) -> HAClient | None:
        return self._node.client

    @property
    def ha_version(self) -> str | None:
        return self._local.ha_version if self._local is not None else self._node.reader.ha_version

    @property
    def connects(self) -> int:
        return self._local.connects if self._local is not None else 0

    @property
    def pong_rtt(self) -> float | None:
        return self._local.pong_rtt if self._local is not None else None

    @property
    def connected(self) -> bool:
        return self._local is not None and self._local.connected

    @property
    def display_url(self) -> str:
        return self._local.display_url if self._local is not None else "the cluster's leader"

    def retry_in(self) -> float | None:
        if self._local is not None:
            return self._local.retry_in()
        return self._node.ttl

    async def call_service(
        self,
        domain: str,
        service: str,
        service_data: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> Any:
        if self._local is not None:
            return await self._local.call_service(domain, service, service_data, target)
        args = {"domain": domain, "service": service, "service_data": service_data, "target": target}
        return await self._node.relay.ask("call_service", args)

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        if self._local is not None:
            return await self._local.history(entity_ids, start, end)
        result = await self._node.relay.ask("history", {"entity_ids": list(entity_ids), "start": start, "end": end})
        return {entity_id: [(p[0], p[1]) for p in points] for entity_id, points in result.items()}
