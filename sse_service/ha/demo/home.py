"""The demo home: a simulated battery, solar panels and house load, written into the demo HA.

It knows nothing of HA's protocol: it writes states and recorder rows through
:class:`DemoHomeAssistant`'s methods, as HA's own integrations write into its state machine.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from .server import DemoHomeAssistant

__all__ = ["BatteryHome"]


class BatteryHome:
    """The demo home: a battery fed by solar, drained by the house, topped up by a grid charger.

    Simulated time runs 60x faster than real time so the values move visibly. The entity ids
    are part of the service's contract: ``sensor.battery_level``, ``sensor.solar_power``,
    ``sensor.house_load`` and ``switch.charger``.
    """

    CAPACITY_WH = 10_000.0
    CHARGER_W = 3_000.0
    SPEEDUP = 60.0
    DAY_S = 600.0  # one simulated "day" of sunshine every ten real minutes

    def __init__(self, ha: DemoHomeAssistant, *, interval: float = 1.0, seed: int | None = None) -> None:
        self.ha = ha
        self.interval = interval
        self.random = random.Random(seed)
        self.level = 62.0
        self.load = 650.0
        self._started = time.monotonic()
        self._write_past_day()
        ha.set_state("sensor.battery_level", f"{self.level:.1f}", {
            "unit_of_measurement": "%", "device_class": "battery", "state_class": "measurement",
            "friendly_name": "Home battery",
        })  # fmt: skip
        ha.set_state("sensor.solar_power", "0", {
            "unit_of_measurement": "W", "device_class": "power", "state_class": "measurement",
            "friendly_name": "Solar power",
        })  # fmt: skip
        ha.set_state("sensor.house_load", f"{self.load:.0f}", {
            "unit_of_measurement": "W", "device_class": "power", "state_class": "measurement",
            "friendly_name": "House load",
        })  # fmt: skip
        ha.set_state("switch.charger", "off", {"friendly_name": "Battery charger", "icon": "mdi:battery-charging"})
        self.tick()

    def _write_past_day(self, step: float = 300.0) -> None:
        """A plausible last day in the recorder: sun from 6 to 18 h UTC, a house load, the battery in between."""
        now = time.time()
        level = 45.0
        for k in range(int(86400 // step), 0, -1):
            when = now - k * step
            hour = (when % 86400) / 3600
            solar = max(0.0, 4200 * math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0
            solar = max(0.0, solar + self.random.gauss(0, 150)) if solar else 0.0
            load = max(180.0, 500 + 900 * math.exp(-(((hour - 19) / 2.0) ** 2)) + self.random.gauss(0, 120))
            level = min(100.0, max(5.0, level + (solar - load) * step / 3600 / self.CAPACITY_WH * 100))
            self.ha.record("sensor.solar_power", when, f"{solar:.0f}")
            self.ha.record("sensor.house_load", when, f"{load:.0f}")
            self.ha.record("sensor.battery_level", when, f"{level:.1f}")
        self.level = level

    def tick(self) -> None:
        phase = ((time.monotonic() - self._started) % self.DAY_S) / self.DAY_S
        solar = max(0.0, 4200 * math.sin(math.pi * phase) + self.random.gauss(0, 120))
        self.load = min(4500.0, max(180.0, self.load + self.random.gauss(0, 90)))
        if self.random.random() < 0.05:
            self.load = min(4500.0, self.load + self.random.uniform(800, 2000))  # kettle, oven...
        charging = self.ha.states["switch.charger"]["state"] == "on"
        net_w = solar - self.load + (self.CHARGER_W if charging else 0.0)
        self.level += net_w * self.interval * self.SPEEDUP / 3600 / self.CAPACITY_WH * 100
        self.level = min(100.0, max(0.0, self.level))
        self.ha.set_state("sensor.solar_power", f"{solar:.0f}")
        self.ha.set_state("sensor.house_load", f"{self.load:.0f}")
        self.ha.set_state("sensor.battery_level", f"{self.level:.1f}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()
