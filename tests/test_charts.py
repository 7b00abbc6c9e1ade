"""The page's charts (web/chart.js, issue 15) and what a first run shows (issue 17), in Chromium.

Real uvicorn, real browser (Debian's chromium through Playwright, as in test_page.py). The
demo bridge (no HA_URL) has a recorded past day, so its charts are full at load; the fake Home
Assistant of the ``ha`` fixture gets a recorded day where a test needs one. The charts are SVG:
the tests read the drawn points (``data-points``), the full draws and the appended segments
(``data-draws``, ``data-appends``), the last point's dot, and the tooltip's text.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from playwright.async_api import Browser, Locator, Page, Request, expect

from sse_service.app import WEB_DIR
from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import live_server, settings_for
from .test_page import ARTIFACTS, LABELS_OVERLAP, bridge_has, card, chromium

pytestmark = pytest.mark.timeout(60)

KEY = "charts-key-8d2e4f6a1b3c5d7e"
DEMO = Settings(demo_interval=3600.0)  # the embedded demo, with its past day and no ticks meanwhile
BATTERY = "sensor.battery_level"
TIME = re.compile(r"\d{1,2}:\d{2}")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one browser serves the whole module


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[Any]:
    """``await new_page(width=…, color_scheme=…)``: a tab in a fresh context; no page may throw."""
    contexts = []
    errors: list[str] = []

    async def make(
        width: int = 1280, height: int = 800, color_scheme: Literal["light", "dark"] = "light", **options: Any
    ) -> Page:
        context = await browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=color_scheme, **options
        )
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    expect.set_options(timeout=5000)
    yield make
    for context in contexts:
        await context.close()
    assert errors == [], "the page threw"


def plot(page: Page, entity_id: str = BATTERY) -> Locator:
    return card(page, entity_id).locator(".plot")


async def number(locator: Locator, attribute: str) -> float:
    value = await locator.get_attribute(attribute)
    assert value is not None, attribute
    return float(value)


async def drawn(page: Page, entity_id: str = BATTERY) -> list[list[float]]:
    """The points the chart has in view, oldest first."""
    points: list[list[float]] = await page.evaluate(
        "(id) => { const c = cards.get(id).chart; return c.series.slice(c.first); }", entity_id
    )
    return points


# The recorder's day is in the battery chart: ``n`` points, or points over 23 h (the demo's day
# has fewer distinct values at some times of day, when the battery sits full or empty for hours).
DAY_DRAWN = """([id, n]) => {
  const chart = cards.get(id)?.chart;
  const points = chart ? chart.series.slice(chart.first) : [];
  const graph = document.querySelector(`[data-entity='${id}'] live-chart`);
  const shown = Number(graph?.shadowRoot.querySelector(".plot")?.dataset.points);
  return shown >= n || (points.length > 1 && points.at(-1)[0] - points[0][0] > 23 * 3600);
}"""


async def full_charts(page: Page, at_least: int = 100) -> None:
    """Wait for the battery chart to hold the recorder's day (it may come after the snapshot)."""
    await expect(plot(page)).to_have_attribute("data-points", re.compile(r"\d+"))
    await page.wait_for_function(DAY_DRAWN, arg=[BATTERY, at_least])


def record_day(ha: DemoHomeAssistant, entity_id: str, step: float = 600.0) -> None:
    """A recorded past day for ``entity_id`` in the fake HA: a slow wave between 20 and 80."""
    now = time.time()
    for k in range(int(86400 // step), 0, -1):
        ha.record(entity_id, now - k * step, f"{50 + 30 * math.sin(k / 20):.1f}")


async def test_the_demo_shows_a_day_of_history_at_load_and_says_it_is_the_demo(new_page: Any) -> None:
    async with live_server(DEMO, web_dir=WEB_DIR) as live:
        page = await new_page()
        await page.goto(live.url + "/")
        await full_charts(page)
        points = await drawn(page)
        span = points[-1][0] - points[0][0]
        assert 23 * 3600 < span <= 24 * 3600 + 60, f"a day of battery, not {span / 3600:.1f} h"
        for entity_id in ("sensor.solar_power", "sensor.house_load"):
            assert await number(plot(page, entity_id), "data-points") >= 60
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"^Home battery: chart of the last 24 h"))
        # Axes: value labels (the top one with the unit) and times of day.
        value_labels = await plot(page).locator(".value-label").all_text_contents()
        assert len(value_labels) >= 3 and value_labels[-1].endswith(" %"), value_labels
        assert await plot(page).locator(".time-label").count() >= 1
        # Beside the chart: the lowest and highest value in it, labelled.
        low, high = min(v for _, v in points), max(v for _, v in points)
        await expect(card(page, BATTERY).locator(".range")).to_have_text(f"min {low:g} · max {high:g} %")
        # The first run says what this is: the demo, not Home Assistant.
        await expect(page.locator("#demo")).to_be_visible()
        await expect(page.locator("#demo")).to_have_text("Demo")
        await expect(page.locator("footer")).to_contain_text("Demo data")
        await expect(page.locator("footer")).not_to_contain_text("Live from Home Assistant")
        await expect(page.locator("#ranges")).to_be_visible()  # a day of history: the range switch is offered
        await expect(card(page, "switch.charger").locator(".chart")).to_be_hidden()


async def test_the_tooltip_shows_a_value_and_a_time_under_the_pointer_and_under_a_finger(new_page: Any) -> None:
    async with live_server(DEMO, web_dir=WEB_DIR) as live:
        page = await new_page()
        await page.goto(live.url + "/")
        await full_charts(page)
        chart, tip = plot(page), card(page, BATTERY).locator(".tip")
        await expect(tip).to_be_hidden()
        box = await chart.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        await expect(tip).to_be_visible()
        points = await drawn(page)
        cursor = int(await number(chart, "data-cursor"))
        value, _ = points[cursor][1], points[cursor][0]
        await expect(tip.locator("strong")).to_have_text(f"{value:g} %")
        await expect(tip.locator("span")).to_have_text(TIME)
        assert 0.3 < cursor / len(points) < 0.7, "the point under the pointer, mid-chart"
        await card(page, BATTERY).screenshot(path=ARTIFACTS / "charts-tooltip.png")
        # Further right: a later point.
        await page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.5)
        assert await number(chart, "data-cursor") > cursor
        await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] + 200)
        await expect(tip).to_be_hidden()

        # A phone: a finger on the chart shows the tooltip too (pointer events, pointerType touch).
        phone = await new_page(width=390, height=844, has_touch=True, is_mobile=True)
        await phone.goto(live.url + "/")
        await full_charts(phone)
        chart, tip = plot(phone), card(phone, BATTERY).locator(".tip")
        box = await chart.bounding_box()
        assert box is not None
        await phone.touchscreen.tap(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        await expect(tip).to_be_visible()
        await expect(tip.locator("strong")).to_have_text(re.compile(r"^\d+(\.\d+)? %$"))
        await expect(tip.locator("span")).to_have_text(TIME)
        await phone.screenshot(path=ARTIFACTS / "charts-phone-touch.png", full_page=True)
        await expect(tip).to_be_hidden(timeout=5000)  # it goes after a few seconds


async def test_the_keyboard_reaches_the_chart_and_arrows_move_the_tooltip(new_page: Any) -> None:
    async with live_server(DEMO, web_dir=WEB_DIR) as live:
        page = await new_page()
        await page.goto(live.url + "/")
        await full_charts(page)
        chart, tip = plot(page), card(page, BATTERY).locator(".tip")
        for _ in range(10):  # Tab from the top of the page reaches it
            await page.keyboard.press("Tab")
            if await chart.evaluate("(el) => el === el.getRootNode().activeElement"):  # in the chart's shadow root
                break
        await expect(chart).to_be_focused()
        points = await drawn(page)
        last = len(points) - 1
        await expect(tip).to_be_visible()  # focus shows the latest point
        await expect(chart).to_have_attribute("data-cursor", str(last))
        await expect(tip.locator("strong")).to_have_text(f"{points[last][1]:g} %")
        await page.keyboard.press("ArrowLeft")
        await page.keyboard.press("ArrowLeft")
        await expect(chart).to_have_attribute("data-cursor", str(last - 2))
        await expect(tip.locator("strong")).to_have_text(f"{points[last - 2][1]:g} %")
        await expect(tip.locator("span")).to_have_text(TIME)
        await page.keyboard.press("Home")
        await expect(chart).to_have_attribute("data-cursor", "0")
        await expect(tip.locator("strong")).to_have_text(f"{points[0][1]:g} %")
        await page.keyboard.press("ArrowRight")
        await expect(chart).to_have_attribute("data-cursor", "1")
        await page.keyboard.press("End")
        await expect(chart).to_have_attribute("data-cursor", str(last))
        await page.keyboard.press("Escape")
        await expect(tip).to_be_hidden()
        await page.keyboard.press("ArrowLeft")  # still focused: the arrows bring it back
        await expect(tip).to_be_visible()
        await page.keyboard.press("Tab")
        await expect(tip).to_be_hidden()


async def test_a_live_value_moves_the_last_point_without_redrawing_the_chart(
    ha: DemoHomeAssistant, new_page: Any
) -> None:
    record_day(ha, BATTERY)
    ha.set_state(BATTERY, "50.0")
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        page = await new_page()
        await page.goto(live.url + "/")
        await full_charts(page)
        chart = plot(page)
        dot = chart.locator(".last")
        draws, appends = await number(chart, "data-draws"), await number(chart, "data-appends")
        x, y = await number(dot, "cx"), await number(dot, "cy")
        line = await chart.locator(".line").get_attribute("d")
        assert line is not None

        ha.set_state(BATTERY, "70.5")  # inside the value axis: one more segment
        await expect(card(page, BATTERY).locator("[part=number]")).to_have_text("70.5")
        await expect(chart).to_have_attribute("data-appends", str(int(appends) + 1))
        assert await number(chart, "data-draws") == draws, "not drawn again"
        new_line = await chart.locator(".line").get_attribute("d")
        assert new_line is not None and new_line.startswith(line) and new_line.count("L") == line.count("L") + 1
        assert await number(dot, "cy") < y, "the last point went up"
        assert await number(dot, "cx") >= x
        assert (await drawn(page))[-1][1] == 70.5
        # Hovering the last point, the tooltip follows the live value.
        await chart.focus()
        await expect(card(page, BATTERY).locator(".tip strong")).to_have_text("70.5 %")
        ha.set_state(BATTERY, "71")
        await expect(card(page, BATTERY).locator(".tip strong")).to_have_text("71 %")

        ha.set_state(BATTERY, "250")  # past the top of the axis: drawn again, with a new axis
        await expect(chart).to_have_attribute("data-draws", str(int(draws) + 1))
        await expect(chart.locator(".value-label").last).to_have_text(re.compile(r"^(250|300) %$"))
        await expect(card(page, BATTERY).locator(".range")).to_have_text(re.compile(r"^min 2\d(\.\d)? · max 250 %$"))
        # Against Home Assistant, the page does not say demo.
        await expect(page.locator("footer")).to_contain_text("Live from Home Assistant")
        await expect(page.locator("#demo")).to_be_hidden()


async def test_the_range_switch_asks_the_recorder_for_more_with_the_read_key(new_page: Any) -> None:
    # The snapshot holds two hours; HA's recorder (the demo's) a day.
    settings = dataclasses.replace(DEMO, history_window=7200.0, read_key=Secret(KEY))
    async with live_server(settings, web_dir=WEB_DIR) as live:
        page = await new_page()
        asked: list[str] = []

        def on_request(request: Request) -> None:
            if "/api/history/" in request.url:
                asked.append(request.url)

        page.on("request", on_request)
        await page.goto(f"{live.url}/?key={KEY}")
        await full_charts(page, at_least=2)
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 2 h"))
        ranges = page.locator("#ranges")
        await expect(ranges).to_be_visible()
        assert asked == [], "the snapshot's history is enough at load"

        async with page.expect_response(lambda r: BATTERY in r.url and "/api/history/" in r.url) as answer:
            await ranges.get_by_role("button", name="6 h").click()
        assert (await answer.value).status == 200
        await expect(ranges.get_by_role("button", name="6 h")).to_have_attribute("aria-pressed", "true")
        await expect(ranges.get_by_role("button", name="24 h")).to_have_attribute("aria-pressed", "false")
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 6 h"))
        points = await drawn(page)
        assert 5.5 * 3600 < points[-1][0] - points[0][0] <= 6 * 3600 + 60
        assert all(f"key={KEY}" in url for url in asked) and len(asked) == 3, asked  # the three numbers
        since = int(re.search(r"since=(\d+)", asked[0]).group(1))  # type: ignore[union-attr]
        assert abs(since - (time.time() - 6 * 3600)) < 30

        await ranges.get_by_role("button", name="24 h").click()
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 24 h"))
        points = await drawn(page)
        assert 23 * 3600 < points[-1][0] - points[0][0] <= 24 * 3600 + 60
        await ranges.get_by_role("button", name="1 h").click()
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 1 h"))
        points = await drawn(page)
        assert points[0][0] >= time.time() - 3600 - 60
        assert len(asked) == 9
        # Back to 6 h: asked a minute ago, so not asked again.
        await ranges.get_by_role("button", name="6 h").click()
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 6 h"))
        await page.wait_for_timeout(200)
        assert len(asked) == 9
        # The browser remembers the range: a reload shows 6 h again, asked of the recorder at once.
        async with page.expect_response(lambda r: BATTERY in r.url and "/api/history/" in r.url):
            await page.reload()
        await expect(ranges.get_by_role("button", name="6 h")).to_have_attribute("aria-pressed", "true")
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 6 h"))
        await page.wait_for_function(
            "(id) => { const c = cards.get(id)?.chart; return c?.series.at(-1)[0] - c?.series[c.first][0] > 19800; }",
            arg=BATTERY,
        )


async def test_without_a_recorder_the_range_switch_keeps_what_the_snapshot_had(
    ha: DemoHomeAssistant, new_page: Any
) -> None:
    ha.has_recorder = False
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        now = time.time()
        # What this bridge saw itself over the last two hours (there is no recorder to ask).
        live.service.log.upstream_history({BATTERY: [(now - 7200 + 120 * i, 30.0 + i % 7) for i in range(60)]})
        page = await new_page()
        await page.goto(live.url + "/")
        await full_charts(page, at_least=50)
        async with page.expect_response(lambda r: "/api/history/" in r.url and BATTERY in r.url) as answer:
            await page.locator("#ranges").get_by_role("button", name="1 h").click()
        response = await answer.value
        assert response.status == 501
        assert (await response.json())["error"]["code"] == "history_unavailable"
        await expect(plot(page)).to_have_attribute("aria-label", re.compile(r"chart of the last 1 h"))
        points = await drawn(page)
        assert len(points) >= 25 and points[0][0] >= now - 3600 - 130, "the snapshot's last hour"
        assert points[-1][1] == 50.0, "and the current value"


async def test_a_bridge_whose_home_assistant_is_down_says_it_is_waiting_for_it(
    ha: DemoHomeAssistant, new_page: Any
) -> None:
    await ha.stop()
    async with live_server(settings_for(ha), web_dir=WEB_DIR, wait_connected=False) as live:
        page = await new_page(width=390, height=844)
        await page.goto(live.url + "/")
        await expect(page.locator("#conn")).to_have_text("Home Assistant down")
        await expect(page.locator("#empty")).to_have_text("Waiting for Home Assistant…")
        await expect(page.locator("#stale")).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "charts-ha-down-phone.png", full_page=True)
        await ha.start()
        await bridge_has(live, BATTERY, "50.0")
        await expect(card(page, BATTERY).locator("[part=number]")).to_have_text("50.0")
        await expect(page.locator("#empty")).to_be_hidden()
        await expect(page.locator("#stale")).to_be_hidden()


async def test_screenshots_of_the_demo_light_dark_and_phone(new_page: Any) -> None:
    """test-artifacts/charts-*.png, for a person to look at; nothing scrolls sideways. The demo as it
    runs from a fresh clone: its past day, then a tick every second."""
    ARTIFACTS.mkdir(exist_ok=True)
    async with live_server(Settings(), web_dir=WEB_DIR) as live:
        shots: list[tuple[str, int, int, Literal["light", "dark"]]] = [
            ("demo", 1280, 800, "light"),
            ("desktop-dark", 1280, 800, "dark"),
            ("phone", 390, 844, "light"),
            ("phone-dark", 390, 844, "dark"),
        ]
        for name, width, height, scheme in shots:
            page = await new_page(width=width, height=height, color_scheme=scheme)
            await page.goto(live.url + "/")
            await full_charts(page)
            width_used = await page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, f"{name}: the page scrolls sideways"
            assert await page.evaluate(LABELS_OVERLAP) == [], f"{name}: axis labels run into each other"
            await plot(page).hover()
            inside = await card(page, BATTERY).evaluate(
                "(el) => { const c = el.getBoundingClientRect();"
                " const t = el.querySelector('live-chart').shadowRoot.querySelector('.tip').getBoundingClientRect();"
                " return t.left >= c.left && t.right <= c.right && t.top >= c.top; }"
            )
            assert inside, f"{name}: the tooltip leaves its card"
            await page.screenshot(path=ARTIFACTS / f"charts-{name}.png", full_page=True)
