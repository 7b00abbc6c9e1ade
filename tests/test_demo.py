"""The demo home keeps the real clock (issue 28): night is night, and the live values continue the recorded day."""

from __future__ import annotations

import calendar

import pytest

from sse_service.ha.demo import BatteryHome, DemoHomeAssistant
from sse_service.ha.demo.home import solar_w


class Clock:
    def __init__(self, when: float) -> None:
        self.now = when

    def __call__(self) -> float:
        return self.now


def at(hour: float) -> float:
    return calendar.timegm((2025, 12, 6, 0, 0, 0)) + hour * 3600


def recorded(ha: DemoHomeAssistant, entity_id: str, before: float) -> list[tuple[float, float]]:
    """The past day the demo wrote (set_state also records, at the machine's own time: left out)."""
    return sorted((when, float(value)) for when, value in ha.recorder[entity_id] if when < before)


def live(ha: DemoHomeAssistant, entity_id: str) -> float:
    return float(ha.states[entity_id]["state"])


def test_five_minutes_of_a_winter_evening_stay_dark_and_the_battery_barely_moves() -> None:
    """What was seen at 21:45 UTC: solar climbing to 3.8 kW, the battery from 48 % to 80 % in five minutes."""
    clock = Clock(at(21.75))
    ha = DemoHomeAssistant()
    home = BatteryHome(ha, interval=1.0, seed=7, clock=clock)
    start = live(ha, "sensor.battery_level")
    for _ in range(300):
        clock.now += 1.0
        home.tick()
        assert live(ha, "sensor.solar_power") == 0.0
    assert abs(live(ha, "sensor.battery_level") - start) < 1.5  # 5 min of a ~2 kW house at most: 0.9 % of 10 kWh


@pytest.mark.parametrize("hour", [3.0, 9.5, 19.0])  # night, morning, evening
def test_the_live_values_continue_the_recorded_day(hour: float) -> None:
    clock = Clock(at(hour))
    ha = DemoHomeAssistant()
    BatteryHome(ha, interval=1.0, seed=3, clock=clock)
    (last_when, last_level), *_ = recorded(ha, "sensor.battery_level", clock.now)[::-1]
    assert clock.now - 300 <= last_when < clock.now
    assert abs(live(ha, "sensor.battery_level") - last_level) < 0.5
    last_solar = recorded(ha, "sensor.solar_power", clock.now)[-1][1]
    assert abs(live(ha, "sensor.solar_power") - last_solar) < 1200  # the recorded sample's noise, plus clouds
    assert abs(live(ha, "sensor.solar_power") - solar_w(clock.now)) <= 0.4 * solar_w(clock.now) + 200
    last_load = recorded(ha, "sensor.house_load", clock.now)[-1][1]
    assert abs(live(ha, "sensor.house_load") - last_load) < 600


def test_a_daytime_start_writes_no_zero_into_the_solar_history() -> None:
    """A first write of 0 W was a vertical drop at the end of every daytime chart."""
    clock = Clock(at(12.0))
    ha = DemoHomeAssistant()
    BatteryHome(ha, interval=1.0, seed=3, clock=clock)
    rows = ha.recorder["sensor.solar_power"]
    assert all(float(state) > 0 for _, state in rows[-12:]), rows[-12:]  # the last hour, and the start's own write
