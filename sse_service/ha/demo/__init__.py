"""The embedded Home Assistant: a WebSocket API server on loopback (``server.py``), the HA side
of the compressed state format it streams (``states.py``) and the simulated home it runs
(``home.py``). The tests use the server, with no home, as their fake HA.
"""

from __future__ import annotations

from .home import BatteryHome
from .server import DemoHomeAssistant, ServiceCall, ServiceError

__all__ = ["BatteryHome", "DemoHomeAssistant", "ServiceCall", "ServiceError"]
