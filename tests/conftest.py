from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sse_service import server
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import seed_home
from .real_ha import fresh_real_ha, pytest_terminal_summary, real_ha, real_ha_release  # noqa: F401  (fixtures, hook)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def ha() -> AsyncIterator[DemoHomeAssistant]:
    """A fake Home Assistant on loopback that follows the WebSocket protocol; no simulation ticks."""
    async with DemoHomeAssistant() as fake:
        seed_home(fake)
        yield fake


@pytest.fixture(params=["httptools", "h11"])
def protocol(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both of uvicorn's HTTP implementations: "auto" takes httptools when it is installed."""
    if request.param == "h11":
        monkeypatch.setattr(server, "_HTTP", server._H11)
    elif server._HTTP is server._H11:
        pytest.skip("httptools is not installed")
    return str(request.param)
