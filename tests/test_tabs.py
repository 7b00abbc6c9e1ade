"""Many tabs of the page in one browser (issue 18): one stream for all of them, commands never wait.

Browsers open at most six HTTP/1.1 connections per host and each ``EventSource`` holds one, so
the page keeps its stream in a SharedWorker that all its tabs share (web/stream.js). These tests
open eight tabs of ``/`` in one Chromium context and check what a person would see in each, and
what the server sees: one stream. Event ids are recorded in every tab (the page dispatches a
``bridge-event`` for each event) to show that no tab misses one. The same eight tabs, each with
a stream of its own, go through nginx with TLS and HTTP/2, where the connection limit is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from sse_service.app import WEB_DIR
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import LiveServer, live_server, settings_for
from .test_nginx import nginx
from .test_page import ARTIFACTS, NO_SHARED_WORKER, bridge_has, card, chart_points, chromium, points_drawn

pytestmark = pytest.mark.timeout(90)

TABS = 8
SWITCHES = ("switch.turn_on", "switch.turn_off")
# Every event with an id that a tab receives, in order, as [name, id].
RECORD_EVENTS = """
window.seen = [];
document.addEventListener("bridge-event", ({ detail: { name, id } }) => {
  if (["snapshot", "state", "remove", "status"].includes(name)) window.seen.push([name, id]);
});
"""
# Click the charger's toggle; resolves with the milliseconds until the page shows the new state.
TOGGLE_AND_TIME = """
() => new Promise((resolve, reject) => {
  const host = document.querySelector('[data-entity="switch.charger"] live-toggle');
  const toggle = host.shadowRoot.querySelector("[part=switch]");
  const before = toggle.getAttribute("aria-checked");
  const started = performance.now();
  new MutationObserver((_, observer) => {
    if (toggle.getAttribute("aria-checked") === before) return;
    observer.disconnect();
    resolve(performance.now() - started);
  }).observe(toggle, { attributes: true, attributeFilter: ["aria-checked"] });
  setTimeout(() => reject(new Error("no answer within 5 s")), 5000);
  toggle.click();
})
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one browser serves the whole module


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@contextlib.asynccontextmanager
async def tabs_context(
    browser: Browser, *, shared: bool = True, locks: bool = False, **options: Any
) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile whose tabs record their event ids.

    ``shared=False`` takes SharedWorker away, with Web Locks and BroadcastChannel too unless
    ``locks`` (Chrome on Android has those but no SharedWorker).
    """
    context = await browser.new_context(viewport={"width": 1000, "height": 700}, **options)
    await context.add_init_script(RECORD_EVENTS)
    if not shared:
        await context.add_init_script("delete window.SharedWorker;" if locks else NO_SHARED_WORKER)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    expect.set_options(timeout=5000)
    try:
        yield context
    finally:
        await context.close()
    assert errors == [], "a page threw"


async def open_tab(context: BrowserContext, url: str) -> tuple[Page, float]:
    """A new tab of ``url``; returns it and the seconds until it showed live values."""
    started = time.monotonic()
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card(page, "sensor.battery_level").locator("[part=number]")).not_to_be_empty()
    return page, time.monotonic() - started


async def open_tabs(context: BrowserContext, url: str, count: int = TABS) -> tuple[list[Page], list[float]]:
    opened = [await open_tab(context, url) for _ in range(count)]
    return [page for page, _ in opened], [seconds for _, seconds in opened]


async def server_streams(url: str) -> int:
    """The stream count the bridge reports on /healthz."""
    async with httpx.AsyncClient(verify=False) as client:
        clients: int = (await client.get(url + "/healthz")).json()["clients"]
        return clients


async def wait_streams(url: str, count: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while await server_streams(url) != count:
            await asyncio.sleep(0.05)


def seq(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


async def missed_events(page: Page) -> list[str]:
    """Where a tab's event ids do not follow on: each id is the one before plus one, except a
    snapshot, which is the whole state (it may be a later one, never an earlier one)."""
    seen: list[list[str]] = await page.evaluate("window.seen")
    assert seen and seen[0][0] == "snapshot", seen[:3]
    problems = []
    for (_, before), (name, event_id) in zip(seen, seen[1:], strict=False):
        if not (seq(event_id) >= seq(before) if name == "snapshot" else seq(event_id) == seq(before) + 1):
            problems.append(f"{name} {event_id} after {before}")
    return problems


async def snapshots_seen(page: Page) -> int:
    count: int = await page.evaluate("window.seen.filter(([name]) => name === 'snapshot').length")
    return count


async def last_seq(page: Page) -> int:
    event_id: str = await page.evaluate("window.seen.at(-1)[1]")
    return seq(event_id)


@contextlib.asynccontextmanager
async def changes(ha: DemoHomeAssistant, every: float = 0.03) -> AsyncIterator[list[int]]:
    """sensor.house_load counts up while the block runs; yields the values set so far."""
    values: list[int] = []

    async def run() -> None:
        while True:
            values.append(len(values) + 1)
            ha.set_state("sensor.house_load", str(values[-1]))
            await asyncio.sleep(every)

    task = asyncio.create_task(run())
    try:
        yield values
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def all_caught_up(ha: DemoHomeAssistant, live: LiveServer, pages: list[Page]) -> None:
    """Every tab shows Home Assistant's value, has every event up to the bridge's last, and missed none."""
    hub = live.service.hub
    truth = ha.states["sensor.house_load"]["state"]
    await bridge_has(live, "sensor.house_load", truth)
    for page in pages:
        await expect(card(page, "sensor.house_load").locator("[part=number]")).to_have_text(truth)
        async with asyncio.timeout(5):
            while await last_seq(page) != hub.seq:
                await asyncio.sleep(0.05)
        assert await missed_events(page) == []


async def test_eight_tabs_share_one_stream_and_a_toggle_from_the_eighth_answers_at_once(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha, allowed_services=SWITCHES), web_dir=WEB_DIR) as live:
        for value in ("51.0", "52.5", "50.5"):  # a chart with a shape
            ha.set_state("sensor.battery_level", value)
            await bridge_has(live, "sensor.battery_level", value)
        async with tabs_context(browser) as context:
            pages, seconds = await open_tabs(context, live.url + "/")
            print(f"\neight tabs: live after {', '.join(f'{s:.2f}' for s in seconds)} s")
            assert max(seconds) < 3.0, seconds
            assert await server_streams(live.url) == 1, "one stream for the eight tabs"
            assert [await p.locator("html").get_attribute("data-stream") for p in pages] == ["shared"] * TABS

            ha.set_state("sensor.battery_level", "49.0")
            for page in pages:
                await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text(
                    "49.0", timeout=2000
                )
            # A tab that opened late drew the same chart as the first, which saw the changes live.
            charts = [await chart_points(p, "sensor.battery_level") for p in pages]
            assert all(chart == charts[0] for chart in charts) and len(charts[0]) == 5, charts

            latency: float = await pages[-1].evaluate(TOGGLE_AND_TIME)
            print(f"eight tabs: the toggle in tab 8 answered in {latency:.0f} ms")
            assert latency < 1000
            for page in pages:
                toggle = card(page, "switch.charger").locator("[part=switch]")
                await expect(toggle).to_have_attribute("aria-checked", "true", timeout=2000)
            latency = await pages[0].evaluate(TOGGLE_AND_TIME)
            assert latency < 1000, "and from tab 1"
            assert [c.service for c in ha.service_calls] == ["turn_on", "turn_off"]
            ARTIFACTS.mkdir(exist_ok=True)
            await pages[-1].screenshot(path=ARTIFACTS / "tabs-8-of-8.png", full_page=True)
            assert await server_streams(live.url) == 1


async def test_a_tab_opened_late_shows_the_current_view_at_once_even_with_home_assistant_down(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        async with tabs_context(browser) as context:
            first, _ = await open_tab(context, live.url + "/")
            for i in range(20):  # changes the first tab sees one by one
                ha.set_state("sensor.solar_power", str(1000 + 37 * i % 300))
            await bridge_has(live, "sensor.solar_power", ha.states["sensor.solar_power"]["state"])
            ha.remove_state("light.kitchen")
            await expect(card(first, "light.kitchen")).to_have_count(0)
            await ha.stop()
            await expect(first.locator("#stale")).to_be_visible()

            started = time.monotonic()
            late = await context.new_page()
            await late.goto(live.url + "/")
            await expect(late.locator("#conn")).to_have_text("Home Assistant down", timeout=1000)
            await expect(late.locator("#stale")).to_be_visible(timeout=1000)
            assert time.monotonic() - started < 1.5
            # The same view as the first tab: values, cards, chart, and the banner's "since".
            await expect(late.locator("#stale")).to_have_text(await first.locator("#stale").inner_text())
            await expect(late.locator(".card")).to_have_count(4)
            solar = await chart_points(first, "sensor.solar_power")
            assert await chart_points(late, "sensor.solar_power") == solar and len(solar) > 10
            await expect(card(late, "switch.charger").locator("[part=switch]")).to_be_disabled()
            await late.screenshot(path=ARTIFACTS / "tabs-late-tab-ha-down.png", full_page=True)

        # A browser with no tab open yet, opened while Home Assistant is down: the bridge's snapshot says so.
        async with tabs_context(browser) as context:
            page = await context.new_page()
            await page.goto(live.url + "/")
            await expect(page.locator("#conn")).to_have_text("Home Assistant down")
            await expect(page.locator("#stale")).to_contain_text("Home Assistant is unreachable")
            await ha.start()
            await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            await expect(page.locator("#stale")).to_be_hidden()


async def test_every_tab_shows_the_shared_stream_going_away_and_coming_back(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    settings = settings_for(ha, retry_ms=500)
    async with tabs_context(browser) as context:
        async with live_server(settings, web_dir=WEB_DIR) as live:
            port = live.port
            pages, _ = await open_tabs(context, live.url + "/", 3)
        for page in pages:  # the bridge is gone
            await expect(page.locator("#conn")).to_have_text("Reconnecting…")
            await expect(page.locator("#stale")).to_contain_text("No connection to the bridge")
            await expect(card(page, "switch.charger").locator("[part=switch]")).to_be_disabled()
        ha.set_state("sensor.battery_level", "42.0")
        async with live_server(settings, port=port, web_dir=WEB_DIR) as live:
            for page in pages:
                await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text("42.0")
                await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
                await expect(page.locator("#stale")).to_be_hidden()
            assert await server_streams(live.url) == 1


async def test_history_that_arrives_later_redraws_the_chart_in_every_tab_and_in_a_late_one(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        async with tabs_context(browser) as context:
            first, _ = await open_tab(context, live.url + "/")
            chart = card(first, "sensor.battery_level").locator(".plot")
            await expect(card(first, "sensor.battery_level").locator(".range")).to_have_text("")  # one point
            now = time.time()
            past = [(now - 3600 + 60 * i, 40.0 + i) for i in range(10)]  # the recorder's, as HA's would come
            live.service.log.upstream_history({"sensor.battery_level": past})
            await expect(card(first, "sensor.battery_level").locator(".range")).to_have_text(
                "min 40 · max 50 %", timeout=2000
            )
            assert await points_drawn(chart) == 11
            late, _ = await open_tab(context, live.url + "/")
            drawn = await chart_points(first, "sensor.battery_level")
            assert await chart_points(late, "sensor.battery_level") == drawn, "the worker's view has the history too"


async def test_closing_the_tab_that_opened_the_stream_loses_no_event_in_the_others(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        async with tabs_context(browser) as context:
            pages, _ = await open_tabs(context, live.url + "/")
            async with changes(ha) as values:
                await asyncio.sleep(0.5)
                await pages[0].close()  # the tab that started the worker
                count = len(values)
                for page in pages[1:]:  # still live: changes keep coming
                    await expect(card(page, "sensor.house_load").locator("[part=number]")).not_to_have_text(str(count))
                await asyncio.sleep(1.0)
                ha.set_state("sensor.battery_level", "12.5")
            await all_caught_up(ha, live, pages[1:])
            for page in pages[1:]:
                await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text("12.5")
                assert await snapshots_seen(page) == 1
            assert await server_streams(live.url) == 1
            assert live.service.hub.snapshots == 1 and live.service.hub.replays == 0


async def test_the_shared_stream_resumes_with_last_event_id_when_the_bridge_ends_it(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    # The bridge ends each stream after about a second (MAX_STREAM_AGE); the browser comes back at once.
    async with live_server(settings_for(ha, max_stream_age=1.0), web_dir=WEB_DIR) as live:
        async with tabs_context(browser) as context:
            pages, _ = await open_tabs(context, live.url + "/", 4)
            hub = live.service.hub
            async with changes(ha):
                async with asyncio.timeout(10):
                    while hub.replays < 3:
                        await asyncio.sleep(0.05)
            await all_caught_up(ha, live, pages)
            for page in pages:
                assert await snapshots_seen(page) == 1, "resumed every time, never a fresh snapshot"
            assert hub.snapshots == 1
            assert await server_streams(live.url) == 1


async def test_when_the_worker_dies_the_tabs_start_another_that_resumes_where_they_were(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        async with tabs_context(browser) as context:
            pages, _ = await open_tabs(context, live.url + "/", 3)
            cdp = await browser.new_browser_cdp_session()
            targets = (await cdp.send("Target.getTargets"))["targetInfos"]
            (worker,) = [t for t in targets if t["type"] == "shared_worker" and t["url"].startswith(live.url)]
            hub = live.service.hub
            async with changes(ha):
                await asyncio.sleep(0.3)
                await cdp.send("Target.closeTarget", {"targetId": worker["targetId"]})  # as if its process crashed
                await wait_streams(live.url, 0)
                died = time.monotonic()
                await wait_streams(live.url, 1)
                print(f"\nworker gone: a new one streams after {time.monotonic() - died:.2f} s")
                # The worker says it lives 4 times a second: 3 missed and the tabs replace it.
                assert time.monotonic() - died < 1.5
                await asyncio.sleep(0.5)
            await all_caught_up(ha, live, pages)
            assert hub.replays == 1 and hub.snapshots == 1, "the new worker resumed from a tab's last event id"
            await cdp.detach()


async def test_without_shared_worker_each_tab_holds_its_own_stream(ha: DemoHomeAssistant, browser: Browser) -> None:
    async with live_server(settings_for(ha, allowed_services=SWITCHES), web_dir=WEB_DIR) as live:
        async with tabs_context(browser, shared=False) as context:
            pages, _ = await open_tabs(context, live.url + "/", 2)
            assert [await p.locator("html").get_attribute("data-stream") for p in pages] == ["tab", "tab"]
            assert await server_streams(live.url) == 2
            latency: float = await pages[1].evaluate(TOGGLE_AND_TIME)
            assert latency < 1000
            await expect(card(pages[0], "switch.charger").locator("[part=switch]")).to_have_attribute(
                "aria-checked", "true"
            )
            async with changes(ha):
                await asyncio.sleep(0.5)
            await all_caught_up(ha, live, pages)


async def test_without_shared_worker_the_tabs_share_one_stream_through_a_web_lock(
    ha: DemoHomeAssistant, browser: Browser
) -> None:
    async with live_server(settings_for(ha, allowed_services=SWITCHES), web_dir=WEB_DIR) as live:
        async with tabs_context(browser, shared=False, locks=True) as context:
            pages, _ = await open_tabs(context, live.url + "/", 3)
            assert [await p.locator("html").get_attribute("data-stream") for p in pages] == ["lock"] * 3
            assert await server_streams(live.url) == 1
            latency: float = await pages[2].evaluate(TOGGLE_AND_TIME)
            assert latency < 1000
            for page in pages:
                await expect(card(page, "switch.charger").locator("[part=switch]")).to_have_attribute(
                    "aria-checked", "true"
                )
            hub = live.service.hub
            async with changes(ha):
                await asyncio.sleep(0.3)
                await pages[0].close()  # it holds the lock: the next tab takes over, resuming
                await wait_streams(live.url, 1)
                await asyncio.sleep(0.5)
            await all_caught_up(ha, live, pages[1:])
            assert await server_streams(live.url) == 1
            assert hub.snapshots == 1 and hub.replays == 1, "the next tab resumed from its own last event id"


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "stream-per-tab"])
async def test_eight_tabs_through_nginx_over_http2(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path, shared: bool
) -> None:
    """With a stream per tab too: over HTTP/2 the eight streams and the commands share one connection."""
    settings = settings_for(ha, allowed_services=SWITCHES)
    async with live_server(settings, web_dir=WEB_DIR) as live:
        with nginx(tmp_path, live.port, tls=True) as port:
            url = f"https://127.0.0.1:{port}"
            async with tabs_context(browser, shared=shared, ignore_https_errors=True) as context:
                pages, seconds = await open_tabs(context, url + "/")
                print(f"\nhttp/2, {'shared' if shared else 'stream per tab'}: live after {max(seconds):.2f} s at most")
                assert max(seconds) < 3.0, seconds
                protocol = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
                assert {await p.evaluate(protocol) for p in pages} == {"h2"}
                assert await server_streams(url) == (1 if shared else TABS)
                latency: float = await pages[-1].evaluate(TOGGLE_AND_TIME)
                print(f"http/2: the toggle in tab 8 answered in {latency:.0f} ms")
                assert latency < 1000
                for page in pages:
                    await expect(card(page, "switch.charger").locator("[part=switch]")).to_have_attribute(
                        "aria-checked", "true"
                    )
                async with changes(ha):
                    await asyncio.sleep(0.5)
                await all_caught_up(ha, live, pages)
                if not shared:
                    await pages[-1].screenshot(path=ARTIFACTS / "tabs-http2-8-of-8.png", full_page=True)
