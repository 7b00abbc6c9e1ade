"""The demo home: a simulated battery, solar panels and house load, written into the demo HA.

It knows nothing of HA's protocol: it writes states and recorder rows through
:class:`DemoHomeAssistant`'s methods, as HA's own integrations write into its state machine.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from .server import DemoHomeAssistant

__all__ = ["BatteryHome", "house_w", "solar_w"]


def solar_w(when: float) -> float:
    """Sunshine on the panels at ``when`` (epoch seconds): from 6 to 18 h UTC, 4.2 kW at noon."""
    hour = (when % 86400) / 3600
    return max(0.0, 4200 * math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0


def house_w(when: float) -> float:
    """The house's usual draw at ``when``: 500 W, and an evening peak around 19 h UTC."""
    hour = (when % 86400) / 3600
    return 500 + 900 * math.exp(-(((hour - 19) / 2.0) ** 2))


class BatteryHome:
    """The demo home: a battery fed by solar, drained by the house, topped up by a grid charger.

    Its recorded past day and its live values follow one model of the day on the real clock
    (:func:`solar_w`, :func:`house_w`): the live values continue the recorded day where it ends, so
    night is night and every chart joins up. The entity ids are part of the service's contract:
    ``sensor.battery_level``, ``sensor.solar_power``, ``sensor.house_load`` and ``switch.charger``.
    """

    CAPACITY_WH = 10_000.0
    CHARGER_W = 3_000.0
    ENTITIES = ("sensor.battery_level", "sensor.solar_power", "sensor.house_load", "switch.charger")

    def __init__(
        self,
        ha: DemoHomeAssistant,
        *,
        interval: float = 1.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ha = ha
        self.interval = interval
        self.random = random.Random(seed)
        self.clock = clock
        self.level = 62.0
        self.appliance = 0.0  # a kettle or an oven on top of the usual draw, fading over a few minutes
        self.cloud = 1.0  # the share of the sunshine that reaches the panels, drifting
        self._write_past_day()
        ha.set_state("sensor.battery_level", f"{self.level:.1f}", {
            "unit_of_measurement": "%", "device_class": "battery", "state_class": "measurement",
            "friendly_name": "Home battery",
        })  # fmt: skip
        # The recorded day's last value, not 0: a 0 here was a vertical drop at the end of every
        # daytime chart (the recorder keeps this first write too).
        ha.set_state("sensor.solar_power", f"{self.solar:.0f}", {
            "unit_of_measurement": "W", "device_class": "power", "state_class": "measurement",
            "friendly_name": "Solar power",
        })  # fmt: skip
        ha.set_state("sensor.house_load", f"{self.load:.0f}", {
            "unit_of_measurement": "W", "device_class": "power", "state_class": "measurement",
            "friendly_name": "House load",
        })  # fmt: skip
        ha.set_state("switch.charger", "off", {"friendly_name": "Battery charger", "icon": "mdi:battery-charging"})
        self._last = self.clock()
        self.tick()

    def _write_past_day(self, step: float = 300.0) -> None:
        """A plausible last day in the recorder, ending now, on the same model as the live values."""
        now = self.clock()
        level = 45.0
        load = house_w(now - 86400)
        for k in range(int(86400 // step), 0, -1):
            when = now - k * step
            solar = solar_w(when)
            solar = max(0.0, solar + self.random.gauss(0, 150)) if solar else 0.0
            load = max(180.0, house_w(when) + self.random.gauss(0, 120))
            level = min(100.0, max(5.0, level + (solar - load) * step / 3600 / self.CAPACITY_WH * 100))
            self.ha.record("sensor.solar_power", when, f"{solar:.0f}")
            self.ha.record("sensor.house_load", when, f"{load:.0f}")
            self.ha.record("sensor.battery_level", when, f"{level:.1f}")
        self.level = level
        self.load = load
        self.solar = solar

    def tick(self) -> None:
        now = self.clock()
        elapsed = min(max(0.0, now - self._last), 3600.0)  # a suspended process catches up, within reason
        self._last = now
        self.cloud = min(1.0, max(0.6, self.cloud + self.random.gauss(0, 0.01)))
        sun = solar_w(now)
        solar = max(0.0, sun * self.cloud + self.random.gauss(0, 40)) if sun else 0.0
        if self.random.random() < 0.002 * self.interval:
            self.appliance += self.random.uniform(800, 2000)  # kettle, oven...
        self.appliance *= 0.99
        # The draw wanders around the usual one for this hour, pulled back to it.
        usual = house_w(now) + self.appliance
        self.load = min(4500.0, max(180.0, self.load + 0.05 * (usual - self.load) + self.random.gauss(0, 25)))
        charging = self.ha.states["switch.charger"]["state"] == "on"
        net_w = solar - self.load + (self.CHARGER_W if charging else 0.0)
        self.level += net_w * elapsed / 3600 / self.CAPACITY_WH * 100
        self.level = min(100.0, max(0.0, self.level))
        self.ha.set_state("sensor.solar_power", f"{solar:.0f}")
        self.ha.set_state("sensor.house_load", f"{self.load:.0f}")
        self.ha.set_state("sensor.battery_level", f"{self.level:.1f}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()
