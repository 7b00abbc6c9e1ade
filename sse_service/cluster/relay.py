"""Commands and history queries from any instance, carried to the leader through Redis.

The asking instance pushes a request (an id, two deadlines, the call) onto a list; the leader
pops it with a blocking read, says so on a reply key of that id (expiring), makes the call on
its Home Assistant connection and pushes the answer there, which the asker pops with blocking
reads. Nobody took it by the first deadline: no leader, 503; taken but not answered by the
second (``COMMAND_TIMEOUT``): HA is slow, 504, as on one instance.
A list, not pub/sub: a request made while the leader changes waits for the next one, and
pub/sub loses what is sent while a subscriber reconnects. The first deadline keeps a late
leader from acting on a request its asker has given up on (instances' clocks must agree).

Every check (keys, allowlist, body) is made by the asking instance before anything is sent;
the answer is HA's own (result, error code, or no answer in time), so the route answers the
same on every instance.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import sse
from ..upstream import HAError, NotConnected, Upstream
from .keys import Keys
from .log import describe_redis_error

__all__ = ["Relay"]

log = logging.getLogger("sse_service.cluster")

REPLY_TTL_MS = 30_000
BLOCK = 2  # seconds the leader's wait for requests lasts (its client's socket timeout is longer)
TAKEN = "taken"  # the leader's first word on a reply key: the request is being run


class Relay:
    def __init__(self, redis: Redis, blocking: Redis, keys: Keys, *, timeout: float) -> None:
        self.forwarded = 0  # requests this instance sent to the leader
        self.served = 0  # requests this instance answered as the leader
        self._redis = redis
        self._blocking = blocking
        self._keys = keys
        self._timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    # --- asking (any instance but the leader) ------------------------------------------

    async def ask(self, op: str, args: Mapping[str, Any]) -> Any:
        """Have the leader run ``op``; its result. Raises NotConnected or HAError like HAClient.

        Nobody takes the request in time (no leader): NotConnected, so the route answers 503.
        Taken but not answered in time: blocks until the caller's own timeout (the route's 504).
        """
        request_id = secrets.token_hex(8)
        now = time.time()
        # The leader stops taking a request this long before the caller's timeout, and the asker
        # gives up half of it before: room for a busy machine's round trips.
        margin = min(0.5, self._timeout / 4)
        take_by, answer_by = now + self._timeout - margin, now + self._timeout
        request = sse.dumps({"id": request_id, "take_by": take_by, "answer_by": answer_by, "op": op, "args": args})
        reply_key = self._keys.reply(request_id)
        try:
            if not await self._redis.exists(self._keys.lease):
                raise NotConnected("no instance holds the connection to Home Assistant right now (leader election)")
            await self._redis.rpush(self._keys.requests, request)
            self.forwarded += 1
            # The leader says it took the request (it stops taking it at take_by) ...
            taken = await self._blocking.blpop([reply_key], timeout=max(0.01, take_by + margin / 2 - time.time()))
            if taken is None:
                raise NotConnected(f"no instance took the call within {self._timeout:g} s (no leader right now)")
            reply = taken if taken[1] != TAKEN else None
            # ... then answers.
            while reply is None:
                reply = await self._blocking.blpop([reply_key], timeout=max(0.01, answer_by + 1 - time.time()))
                if reply is None:
                    await asyncio.sleep(math.inf)  # the caller's timeout ends this: its 504
        except RedisError as e:
            raise NotConnected(f"Redis is unreachable ({describe_redis_error(e)})") from None
        answer = json.loads(reply[1])
        error = answer.get("error")
        if error == "not_connected":
            raise NotConnected(str(answer.get("message", "not connected to Home Assistant")))
        if error == "ha":
            raise HAError(str(answer.get("code")), str(answer.get("message", "")), answer.get("extra"))
        return answer.get("result")

    # --- answering (the leader) --------------------------------------------------------

    async def serve(self, client: Upstream) -> None:
        """Answer requests with ``client`` until cancelled. Raises redis errors."""
        try:
            while True:
                item = await self._blocking.blpop([self._keys.requests], timeout=BLOCK)
                if item is None:
                    continue
                task = asyncio.create_task(self._answer(client, str(item[1])))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in self._tasks:
                task.cancel()

    async def _answer(self, client: Upstream, raw: str) -> None:
        try:
            request = json.loads(raw)
            request_id, take_by, answer_by = str(request["id"]), float(request["take_by"]), float(request["answer_by"])
            op, args = str(request["op"]), request["args"]
        except (ValueError, KeyError, TypeError):
            log.warning("Ignored a malformed request in %s", self._keys.requests)
            return
        if time.time() > take_by:
            return  # its asker has answered 503 already
        reply_key = self._keys.reply(request_id)
        try:
            await self._push(reply_key, TAKEN)
        except RedisError as e:
            log.warning("Could not take a relayed call through Redis: %s", describe_redis_error(e))
            return
        answer: dict[str, Any]
        try:
            async with asyncio.timeout(max(0.01, answer_by - time.time())):
                answer = {"result": await self._call(client, op, args)}
        except TimeoutError:
            return  # the asker times out as well: its 504
        except NotConnected as e:
            answer = {"error": "not_connected", "message": str(e)}
        except HAError as e:
            answer = {"error": "ha", "code": e.code, "message": e.message, "extra": e.extra}
        except (ValueError, KeyError, TypeError) as e:
            log.warning("Ignored a bad %s request: %s", op, e)
            return
        try:
            await self._push(reply_key, sse.dumps(answer))
            self.served += 1
        except RedisError as e:
            log.warning("Could not send a command's answer through Redis: %s", describe_redis_error(e))

    async def _push(self, key: str, value: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, value)
            pipe.pexpire(key, REPLY_TTL_MS)
            await pipe.execute()

    @staticmethod
    async def _call(client: Upstream, op: str, args: Mapping[str, Any]) -> Any:
        if op == "call_service":
            return await client.call_service(args["domain"], args["service"], args["service_data"], args["target"])
        if op == "history":
            entity_ids: Sequence[str] = args["entity_ids"]
            return await client.history(entity_ids, float(args["start"]), float(args["end"]))
        raise ValueError(f"unknown operation {op!r}")
