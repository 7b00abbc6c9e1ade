from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from sse_service.ha.demo import DemoHomeAssistant

from .helpers import seed_home


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test runs on asyncio through anyio's plugin (it ships with Starlette).
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def ha() -> AsyncIterator[DemoHomeAssistant]:
    """A fake Home Assistant on loopback that follows the WebSocket protocol; no simulation ticks."""
    async with DemoHomeAssistant() as fake:
        seed_home(fake)
        yield fake
