"""A Redis connection kept by one loop that calls Redis for every event (the log's reader and writer).

Commands are sent and read on the connection itself. redis-py's command path (pool,
retry, response callbacks, observability hooks) cost about half of a follower's CPU per
event, measured with py-spy; what is left is the round trip and hiredis's parsing. Replies
come as the server sends them (RESP3 maps with redis-py 8's default protocol), errors as
``ResponseError``. Any failure closes the connection; the next call opens a fresh one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["KeptConnection"]

Command = Sequence[str | int | float]


class KeptConnection:
    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._make = pool.connection_class
        # Its own timeout around each round trip, none in redis-py: with a socket timeout,
        # redis-py sends through asyncio.wait_for, which makes a task per command.
        self._options = {**pool.connection_kwargs, "socket_timeout": None}
        self._timeout = float(pool.connection_kwargs.get("socket_timeout") or 5.0)
        self._conn: AbstractConnection | None = None

    async def call(self, *command: str | int | float) -> Any:
        """One command's reply."""
        (reply,) = await self.call_many([command])
        return reply

    async def call_many(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands in one round trip; their replies, in order. Raises the first error."""
        conn = self._conn
        kept = conn is not None
        if conn is None:
            conn = self._conn = self._make(**self._options)
        packed = conn.pack_commands(commands)
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    await conn.send_packed_command(packed)
                except (ConnectionError, OSError):
                    if not kept:
                        raise
                    await conn.disconnect()  # it died while idle (Redis restarted): one more try
                    await conn.send_packed_command(packed)
                return [await conn.read_response(timeout=math.inf) for _ in commands]
        except TimeoutError:
            await self.close()
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s") from None
        except BaseException:
            await self.close()  # replies may be left unread: never reuse it
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()
