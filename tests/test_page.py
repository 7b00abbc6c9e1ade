"""The page in ``web/``, in a real browser: Debian's chromium driven by Playwright, against real servers.

One browser for the module; each test gets a fresh context. Without chromium these tests
skip, except under ``CI=true``, where they fail: CI must not pass without them.

The page's stream lives in a SharedWorker shared by its tabs, or in the tab where there is no
SharedWorker: the tests of the stream's behaviour run both ways (``page`` parametrized with
``"shared"`` and ``"per-tab"``, the second with SharedWorker deleted by an init script).
Playwright does not see a shared worker's requests, so requests are counted by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from sse_service.app import WEB_DIR
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant, ServiceCall, ServiceError
from sse_service.stream import EventsEndpoint

from .helpers import LiveServer, live_server, open_stream, settings_for
from .redis_server import RedisServer, redis_server_fixture  # noqa: F401  (the redis_server fixture)
from .samples import sample

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, chromium stalls trying to reach Google's services on a closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "page-key-3f9a1c7e5b2d4a6c"
# Run as a browser without SharedWorker (nor Web Locks and BroadcastChannel): a stream per tab.
NO_SHARED_WORKER = "delete window.SharedWorker; delete window.BroadcastChannel; delete Navigator.prototype.locks;"
BOTH_WAYS = pytest.mark.parametrize("page", ["shared", "per-tab"], indirect=True)
# Every pair of axis labels of a chart whose boxes overlap, as "entity: text / text".
LABELS_OVERLAP = """() => {
  const problems = [];
  for (const graph of document.querySelectorAll("live-chart")) {
    const svg = graph.shadowRoot.querySelector(".plot");
    if (!svg) continue;
    const boxes = [...svg.querySelectorAll("text")].map((t) => [t.textContent, t.getBoundingClientRect()]);
    boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) {
        problems.push(`${graph.closest(".card").dataset.entity}: ${a} / ${b}`);
      }
    }));
  }
  return problems;
}"""

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one browser serves the whole module


def chromium_executable() -> str:
    """Debian's chromium; without it the test skips, or fails under ``CI=true``."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        reason = "chromium is not installed (tests/run installs it as root: apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return executable


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A tab in a fresh context; ``"per-tab"`` (indirect parameter) takes SharedWorker away first."""
    mode = getattr(request, "param", "shared")
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    if mode == "per-tab":
        await context.add_init_script(NO_SHARED_WORKER)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=5000)
    yield page
    await context.close()
    assert errors == [], "the page threw"


def card(page: Page, entity_id: str) -> Locator:
    return page.locator(f'[data-entity="{entity_id}"]')


def record_stream_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request for /events the server gets, as "GET" or "HEAD" (whoever sends it: tab or worker)."""
    seen: list[str] = []
    admit = EventsEndpoint._admit

    def recording(self: EventsEndpoint, scope: Any) -> Any:
        seen.append(scope["method"])
        return admit(self, scope)

    monkeypatch.setattr(EventsEndpoint, "_admit", recording)
    return seen


async def points_drawn(chart: Locator) -> int:
    """How many points a card's chart (``.plot``, web/chart.js) has in view."""
    count = await chart.get_attribute("data-points")
    assert count is not None
    return int(count)


async def chart_points(page: Page, entity_id: str) -> list[list[float]]:
    """The points of a card's chart in view, oldest first (``[]`` without a chart)."""
    points: list[list[float]] = await page.evaluate(
        "(id) => { const c = cards.get(id)?.chart; return c ? c.series.slice(c.first) : []; }", entity_id
    )
    return points


async def bridge_has(live: LiveServer, entity_id: str, state: str) -> None:
    async with asyncio.timeout(5):
        while (known := live.service.hub.store.states.get(entity_id)) is None or known["state"] != state:
            await asyncio.sleep(0.005)


@BOTH_WAYS
async def test_the_snapshot_renders_at_once_with_full_charts_and_changes_follow(
    ha: DemoHomeAssistant, page: Page
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        for value in ("51.0", "52.0", "53.5"):
            ha.set_state("sensor.battery_level", value)
            await bridge_has(live, "sensor.battery_level", value)
        started = time.monotonic()
        await page.goto(live.url + "/")
        battery = card(page, "sensor.battery_level")
        await expect(battery.locator("[part=number]")).to_have_text("53.5", timeout=2000)
        assert time.monotonic() - started < 2.0
        await expect(battery.locator(".name")).to_have_text("Home battery")
        await expect(battery.locator("[part=unit]")).to_have_text("%")
        assert await points_drawn(battery.locator(".plot")) == 4, "the chart starts with the bridge's history"
        await expect(battery.locator(".range")).to_have_text("min 50 · max 53.5 %")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#stale")).to_be_hidden()
        await expect(card(page, "switch.charger").locator(".chart")).to_be_hidden()
        await expect(card(page, "light.kitchen").locator("[part=number]")).to_have_text("On")

        ha.set_state("sensor.battery_level", "54.25")
        await expect(battery.locator("[part=number]")).to_have_text("54.25", timeout=2000)
        await expect(battery.locator(".plot")).to_have_attribute("data-points", "5")
        ha.remove_state("light.kitchen")
        await expect(card(page, "light.kitchen")).to_have_count(0)


@BOTH_WAYS
async def test_home_assistant_down_shows_in_the_indicator_and_banner_until_it_is_back(
    ha: DemoHomeAssistant, page: Page
) -> None:
    # A service to call: with none allowed the page is read-only and its toggle never enabled.
    async with live_server(settings_for(ha, allowed_services=("switch.*",)), web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        conn, stale, toggle = page.locator("#conn"), page.locator("#stale"), page.locator("[part=switch]")
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(toggle).to_be_enabled()

        await ha.stop()
        await expect(conn).to_have_attribute("data-state", "upstream-down")
        await expect(conn).to_have_text("Home Assistant down")
        await expect(stale).to_be_visible()
        await expect(stale).to_contain_text("Values may be out of date")
        await expect(toggle).to_be_disabled()

        ha.set_state("sensor.solar_power", "999")
        await ha.start()
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(stale).to_be_hidden()
        await expect(card(page, "sensor.solar_power").locator("[part=number]")).to_have_text("999")
        await expect(toggle).to_be_enabled()


async def test_a_bridge_that_lost_redis_says_so_not_that_home_assistant_is_down(
    ha: DemoHomeAssistant, redis_server: RedisServer, page: Page
) -> None:
    settings = settings_for(ha, redis_url=Secret(redis_server.url), redis_lease_ttl=2.0)
    async with live_server(settings, web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        conn, stale = page.locator("#conn"), page.locator("#stale")
        await expect(conn).to_have_attribute("data-state", "live")

        redis_server.stop()
        await expect(conn).to_have_text("Bridge lost Redis")
        await expect(stale).to_contain_text("The bridge cannot reach its Redis")
        await expect(stale).to_contain_text("Values may be out of date")

        redis_server.start()
        await expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
        await expect(stale).to_be_hidden()


# A status event as the page's Feed would hand it over, dispatched straight into the page.
STATUS = """([status, reason, cause]) => receive({ kind: "event", name: "status", data: {
  status, reason, ...(cause ? { cause } : {}), since: new Date().toISOString() } })"""


async def test_the_page_takes_a_lost_redis_from_the_status_cause_and_from_the_reason_only_without_one(
    ha: DemoHomeAssistant, page: Page
) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        conn, stale = page.locator("#conn"), page.locator("#stale")
        await expect(conn).to_have_attribute("data-state", "live")

        await page.evaluate(STATUS, ["disconnected", "Lost the shared log", "redis"])
        await expect(conn).to_have_text("Bridge lost Redis")
        await expect(stale).to_contain_text("The bridge cannot reach its Redis")
        await page.evaluate(STATUS, ["disconnected", "Redis is unreachable", None])  # a bridge from before causes
        await expect(conn).to_have_text("Bridge lost Redis")
        await page.evaluate(STATUS, ["disconnected", "Redis words, but another cause", "home_assistant"])
        await expect(conn).to_have_text("Home Assistant down")
        await page.evaluate(STATUS, ["starting", "Home Assistant is starting", None])
        await expect(conn).to_have_text("HA is starting…")
        await expect(stale).to_contain_text("Home Assistant is starting since")
        await page.evaluate(STATUS, ["connected", "", None])
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(stale).to_be_hidden()


@BOTH_WAYS
async def test_the_page_reconnects_by_itself_when_the_bridge_restarts(ha: DemoHomeAssistant, page: Page) -> None:
    settings = settings_for(ha, retry_ms=500)
    async with live_server(settings, web_dir=WEB_DIR) as live:
        port = live.port
        await page.goto(live.url + "/")
        await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text("50.0")
        await page.evaluate("window.sameDocument = true")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("#stale")).to_contain_text("No connection to the bridge")
    ha.set_state("sensor.battery_level", "42.0")
    async with live_server(settings, port=port, web_dir=WEB_DIR):
        await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text("42.0")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#stale")).to_be_hidden()
        assert await page.evaluate("window.sameDocument") is True, "no reload"


@BOTH_WAYS
async def test_a_silent_stream_is_flagged_as_stale_and_reopened(
    ha: DemoHomeAssistant, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(settings_for(ha, heartbeat=0.3), web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        # Record every time the banner shows: the page reopens the stream at once, so it is brief.
        await page.evaluate("""() => {
            window.staleSeen = [];
            const banner = document.getElementById("stale");
            new MutationObserver(() => { if (!banner.hidden) window.staleSeen.push(banner.textContent); })
                .observe(banner, { attributes: true, attributeFilter: ["hidden"] });
        }""")
        await asyncio.sleep(2.0)  # well past the page's limit (2 × 0.3 s + 1 s), but pings flow
        assert await page.evaluate("window.staleSeen") == []

        hub = live.service.hub
        streams_opened = hub.snapshots + hub.replays
        # The stream stays open but says nothing, as a half-open connection would.
        monkeypatch.setattr(hub, "heartbeat", lambda: None)
        await page.wait_for_function("window.staleSeen.length > 0", timeout=5000)
        assert "No connection to the bridge" in (await page.evaluate("window.staleSeen"))[0]
        async with asyncio.timeout(2):  # the request that reopens it is on its way
            while not (hub.replays > 0 and hub.snapshots + hub.replays > streams_opened):
                await asyncio.sleep(0.01)
        monkeypatch.undo()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#stale")).to_be_hidden()


@BOTH_WAYS
async def test_the_toggle_goes_through_pending_to_the_state_the_stream_confirms(
    ha: DemoHomeAssistant, page: Page
) -> None:
    settings = settings_for(ha, allowed_services=("switch.turn_on", "switch.turn_off"), write_key=Secret(KEY))
    gate = asyncio.Event()
    turn_on = ha.services[("switch", "turn_on")]

    async def slow_turn_on(call: ServiceCall) -> None:
        await gate.wait()
        await turn_on(call)

    ha.services[("switch", "turn_on")] = slow_turn_on
    async with live_server(settings, web_dir=WEB_DIR) as live:
        await page.goto(f"{live.url}/?key={KEY}")
        charger = card(page, "switch.charger")
        toggle, note = charger.locator("[part=switch]"), charger.locator("[part=note]")
        await expect(toggle).to_have_attribute("aria-checked", "false")
        await expect(toggle).to_have_accessible_name("Battery charger")

        await toggle.click()
        await expect(toggle).to_have_attribute("aria-busy", "true")
        await expect(note).to_have_text("Turning on…")
        await expect(toggle).to_have_attribute("aria-checked", "false")  # not before HA says so
        ARTIFACTS.mkdir(exist_ok=True)
        await charger.screenshot(path=ARTIFACTS / "card-toggle-pending.png")
        gate.set()
        await expect(toggle).to_have_attribute("aria-checked", "true")
        await expect(toggle).to_have_attribute("aria-busy", "false")
        await expect(charger.locator("[part=number]")).to_have_text("On")
        await expect(note).to_have_text("")
        assert [(c.service, c.entity_ids) for c in ha.service_calls] == [("turn_on", ["switch.charger"])]

        # The keyboard works: Space on the focused switch turns it off again.
        await toggle.focus()
        await page.keyboard.press("Space")
        await expect(toggle).to_have_attribute("aria-checked", "false")
        await expect(toggle).to_be_focused()

        def broken(call: ServiceCall) -> None:
            raise ServiceError("home_assistant_error", "Charger is offline")

        ha.services[("switch", "turn_on")] = broken
        await toggle.click()
        await expect(note).to_contain_text("Charger is offline")
        await expect(note).to_have_class(re.compile(r"\berror\b"))
        await charger.screenshot(path=ARTIFACTS / "card-toggle-error.png")
        await expect(toggle).to_have_attribute("aria-checked", "false")
        await expect(toggle).to_have_attribute("aria-busy", "false")


async def test_a_read_only_screen_shows_its_toggle_disabled_and_says_so(ha: DemoHomeAssistant, page: Page) -> None:
    """Seen: with the read key the toggle flipped when tapped, then showed a header recipe."""
    settings = settings_for(
        ha, read_key=Secret(KEY), write_key=Secret("w" * 24), allowed_services=("switch.turn_on", "switch.turn_off")
    )
    async with live_server(settings, web_dir=WEB_DIR) as live:
        await page.goto(f"{live.url}/?key={KEY}")
        charger = card(page, "switch.charger")
        await expect(page.locator("#conn")).to_have_text("Live")
        await expect(charger.locator("[part=switch]")).to_be_disabled()
        await expect(charger.locator("[part=note]")).to_have_text("read-only")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "page-read-only.png", full_page=True)
        await charger.locator("[part=switch]").click(force=True)  # a tap on the disabled control
        await page.wait_for_timeout(300)
        assert ha.service_calls == []
        await expect(charger.locator("[part=switch]")).to_have_attribute("aria-checked", "false")

        # The phone next to it, with the write key, keeps a working toggle.
        await page.goto(f"{live.url}/?key={'w' * 24}")
        await expect(charger.locator("[part=switch]")).to_be_enabled()
        await expect(charger.locator("[part=note]")).to_have_text("")


@BOTH_WAYS
async def test_a_refused_key_is_said_plainly_and_not_retried(
    ha: DemoHomeAssistant, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(settings_for(ha, read_key=Secret(KEY)), web_dir=WEB_DIR) as live:
        requests = record_stream_requests(monkeypatch)
        await page.goto(live.url + "/?key=wrong-key-0000000000")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
        await expect(page.locator("#conn")).to_have_text("Key refused")
        await expect(page.locator("#empty")).to_contain_text("refused the key")
        await page.wait_for_timeout(500)
        assert requests == ["GET", "HEAD"]


@BOTH_WAYS
async def test_a_token_that_expires_ends_the_view_with_the_reason_and_no_retries(
    ha: DemoHomeAssistant, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "page-token-secret-0123456789abcdef"
    settings = settings_for(ha, token_secret=Secret(secret))
    async with live_server(settings, web_dir=WEB_DIR) as live:
        requests = record_stream_requests(monkeypatch)
        claims = {"sub": "tablet", "entities": ["*"], "exp": int(time.time()) + 3}
        link_token = jwt.encode(claims, secret, algorithm="HS256")
        await page.goto(live.url + f"/?key={link_token}")
        conn, stale = page.locator("#conn"), page.locator("#stale")
        await expect(conn).to_have_attribute("data-state", "live")
        # The bridge ends the stream at the token's exp with event: expired; the page says so.
        await expect(conn).to_have_text("Access ended", timeout=8000)
        await expect(conn).to_have_attribute("data-state", "refused")
        await expect(stale).to_contain_text("the token expired at")
        await expect(card(page, "sensor.solar_power")).to_be_visible()  # the last values stay on screen
        await page.wait_for_timeout(1500)
        assert requests == ["GET"], "no reconnect with a token that can only be refused"


@BOTH_WAYS
async def test_a_busy_bridge_is_shown_and_left_to_retry(ha: DemoHomeAssistant, page: Page) -> None:
    async with live_server(settings_for(ha, max_streams_per_ip=1), web_dir=WEB_DIR) as live:
        async with open_stream(live.url + "/events"):  # takes the only stream this address may have
            await page.goto(live.url + "/")
            await expect(page.locator("#conn")).to_have_text("Bridge busy, retrying…")
            await expect(page.locator("#empty")).to_contain_text("too many open streams")


@BOTH_WAYS
async def test_another_bridge_is_reached_with_the_bridge_parameter(ha: DemoHomeAssistant, page: Page) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as site:
        other = settings_for(ha, cors_origins=(site.url,))
        async with live_server(other) as bridge:
            await page.goto(f"{site.url}/?bridge={bridge.url}/&entity_id=sensor.*")
            await expect(card(page, "sensor.house_load").locator("[part=number]")).to_have_text("640")
            await expect(page.locator(".card")).to_have_count(3)
            assert (bridge.service.hub.client_count, site.service.hub.client_count) == (1, 0)


ENTITIES = ("sensor.battery_level", "sensor.solar_power", "sensor.house_load")  # the snippet's


def write_embed_page(directory: Path, bridge_url: str) -> None:
    """index.html holding the docs' embed snippet (docs/eventsource.md), pointed at ``bridge_url``."""
    html = sample("embed-snippet").replace("https://bridge.example.com", bridge_url)
    (directory / "index.html").write_text(f"<!doctype html><meta charset=utf-8>{html}")


async def test_the_docs_embed_snippet_works_from_another_origin(
    ha: DemoHomeAssistant, page: Page, tmp_path: Path
) -> None:
    async with live_server(settings_for(ha), web_dir=tmp_path) as site:
        async with live_server(settings_for(ha, cors_origins=(site.url,))) as bridge:
            write_embed_page(tmp_path, bridge.url)
            await page.goto(site.url + "/")
            battery, solar, house = (page.locator(f'[data-entity="{e}"]') for e in ENTITIES)
            await expect(battery).to_have_text("50.0 %")
            await expect(solar).to_have_text("1200 W")
            await expect(house).to_have_text("640 W")
            ha.set_state("sensor.battery_level", "49.5")
            ha.set_state("sensor.house_load", "700")
            await expect(battery).to_have_text("49.5 %")
            await expect(house).to_have_text("700 W")
            await expect(solar).to_have_text("1200 W")
            assert bridge.service.hub.client_count == 1, "three values, one stream"


async def test_the_readmes_embed_lines_show_the_battery_from_another_origin(
    ha: DemoHomeAssistant, page: Page, tmp_path: Path
) -> None:
    async with live_server(settings_for(ha), web_dir=tmp_path) as site:
        async with live_server(settings_for(ha, cors_origins=(site.url,))) as bridge:
            html = sample("readme-embed").replace("https://bridge.example.com", bridge.url)
            (tmp_path / "index.html").write_text(f"<!doctype html><meta charset=utf-8>{html}")
            await page.goto(site.url + "/")
            await expect(page.locator("#battery")).to_have_text("50.0")
            ha.set_state("sensor.battery_level", "49.5")
            await expect(page.locator("#battery")).to_have_text("49.5")


async def test_entity_text_is_shown_as_text_never_as_markup(ha: DemoHomeAssistant, page: Page) -> None:
    name = "<img src=x onerror=alert(1)>"
    ha.set_state("sensor.evil", "<b>1</b>", {"friendly_name": name, "unit_of_measurement": "<i>u</i>"})
    ha.set_state("sensor.evil_number", "5", {"friendly_name": name, "unit_of_measurement": "<i>u</i>"})
    ha.set_state("sensor.evil_number", "7")  # a chart, its axis, its tooltip and its label carry the unit
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        evil = card(page, "sensor.evil")
        await expect(evil.locator(".name")).to_have_text(name)
        await expect(evil.locator("[part=number]")).to_have_text("<b>1</b>")
        await expect(evil.locator("[part=unit]")).to_have_text("<i>u</i>")
        chart = card(page, "sensor.evil_number").locator(".plot")
        await expect(chart.locator(".value-label").last).to_have_text(re.compile(r" <i>u</i>$"))
        await expect(chart).to_have_attribute("aria-label", re.compile(r"^<img src=x onerror=alert\(1\)>: chart"))
        await chart.focus()
        await expect(card(page, "sensor.evil_number").locator(".tip strong")).to_have_text("7 <i>u</i>")
        await expect(card(page, "sensor.evil_number").locator(".range")).to_have_text("min 5 · max 7 <i>u</i>")
        await page.wait_for_timeout(300)  # an onerror would have fired by now
    assert dialogs == []
    assert await page.locator("img, b, i").count() == 0


async def test_screenshots_at_desktop_and_phone_widths(ha: DemoHomeAssistant, browser: Browser) -> None:
    """Writes test-artifacts/page-*.png for a person to look at (light, dark, Home Assistant down)."""
    now = time.time()
    for i in range(60):  # an hour in the recorder, so the charts have a shape from the start
        when = now - 3600 + 60 * i
        ha.record("sensor.battery_level", when, f"{50 + 15 * math.sin(i / 12):.1f}")
        ha.record("sensor.solar_power", when, f"{1200 + 800 * math.sin(i / 9) + 150 * math.sin(i * 1.7):.0f}")
        ha.record("sensor.house_load", when, f"{640 + (900 if 20 < i < 32 else 0) + 60 * math.cos(i):.0f}")
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        ha.set_state("switch.charger", "on")
        ARTIFACTS.mkdir(exist_ok=True)
        shots: list[tuple[str, int, int, Literal["light", "dark"]]] = [
            ("desktop", 1280, 800, "light"),
            ("phone", 390, 844, "light"),
            ("phone-dark", 390, 844, "dark"),
        ]
        for name, width, height, scheme in shots:
            context = await browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
            page = await context.new_page()
            await page.goto(live.url + "/")
            await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            await expect(card(page, "switch.charger").locator("[part=switch]")).to_have_attribute(
                "aria-checked", "true"
            )
            await expect(card(page, "sensor.house_load").locator(".plot")).to_have_attribute(
                "data-points", re.compile(r"^[4-9]\d$")
            )
            width_used = await page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, f"{name}: the page scrolls sideways"
            assert await page.evaluate(LABELS_OVERLAP) == [], f"{name}: axis labels run into each other"
            await page.screenshot(path=ARTIFACTS / f"page-{name}.png", full_page=True)
            if name == "phone":
                await ha.stop()  # and how it looks when Home Assistant is away
                await expect(page.locator("#stale")).to_be_visible()
                await page.screenshot(path=ARTIFACTS / "page-phone-ha-down.png", full_page=True)
                await ha.start()
            await context.close()


# --- kiosk captures (issue 28) -----------------------------------------------------------------

# How e-ink frames and kiosk scripts capture a page. As root Chromium also needs --no-sandbox.
KIOSK = ["--headless", "--screenshot", "--virtual-time-budget=8000"]


def kiosk(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium_executable(), *KIOSK, *args, *(["--no-sandbox"] if os.geteuid() == 0 else []), url]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


async def test_a_headless_capture_with_virtual_time_shows_the_live_values(
    ha: DemoHomeAssistant, tmp_path: Path
) -> None:
    """Seen: "Reconnecting…" forever, and five streams opened and closed within 0.2 s."""
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        before = live.service.hub.snapshots
        shot = await asyncio.to_thread(kiosk, [], live.url + "/", tmp_path)
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert (tmp_path / "screenshot.png").stat().st_size > 10_000
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "screenshot.png", ARTIFACTS / "kiosk-virtual-time.png")
        # The same capture, its DOM instead of its pixels: what the screenshot shows, in text.
        dom = await asyncio.to_thread(kiosk, ["--dump-dom"], live.url + "/", tmp_path)
        opened = live.service.hub.snapshots - before
    # The values are the kit's <live-value>s: a DOM dump has no shadow roots, so each says its value as data-value.
    assert 'data-value="50.0"' in dom.stdout and 'data-value="640"' in dom.stdout
    # Per capture: the worker's stream and the page's own request that holds the clock, no more.
    assert opened <= 4, f"{opened} streams for two captures"
