"""The element kit (web/kit.js, issue 25) on a page of another origin, in Chromium.

The host page is served by a second server on another loopback port (another origin), holds
one script tag and the elements, and talks to the bridge only through what the kit does: the
tests look at it as a person would (text, roles, names) and count the streams on the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from sse_service.app import WEB_DIR
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.stream import EventsEndpoint

from .helpers import LiveServer, live_server, settings_for
from .samples import sample
from .test_page import ARTIFACTS, chromium
from .test_tabs import wait_streams

pytestmark = pytest.mark.timeout(90)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"
SECRET = "kit-token-secret-0123456789abcdef"
SERVICES = ("switch.turn_on", "switch.turn_off", "light.turn_on", "light.turn_off")
# Ten elements: a value of each kind of entity, an attribute, two charts, two toggles, the connection.
TEN = """
<live-status></live-status>
<live-value id="battery" entity="sensor.battery_level"></live-value>
<live-value id="solar" entity="sensor.solar_power"></live-value>
<live-value id="solar-kw" entity="sensor.solar_power" digits="2"></live-value>
<live-value id="charger-state" entity="switch.charger"></live-value>
<live-value id="brightness" entity="light.kitchen" attribute="brightness"></live-value>
<live-chart id="battery-chart" entity="sensor.battery_level"></live-chart>
<live-chart id="solar-chart" entity="sensor.solar_power"></live-chart>
<live-toggle id="charger" entity="switch.charger"></live-toggle>
<live-toggle id="kitchen" entity="light.kitchen"></live-toggle>
"""
# Every event with an id that the page's elements receive, in order, as [name, id].
RECORD_EVENTS = """
window.seen = [];
document.addEventListener("live-event", ({ detail: { name, id } }) => {
  if (["snapshot", "state", "remove", "status"].includes(name)) window.seen.push([name, id]);
});
"""


def token(*, services: list[str] | None = None) -> str:
    claims: dict[str, Any] = {"sub": "kit-test", "entities": ["*"]}
    if services is not None:
        claims["services"] = services
    return jwt.encode(claims, SECRET, algorithm="HS256")


def host_page(bridge: str, key: str, body: str, *, lang: str = "en", head: str = "") -> str:
    """A page of another site: the two lines (the script tag, the elements) and nothing of the bridge's."""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Host</title>{head}'
        f'<script src="{bridge}/kit.js" data-key="{key}"></script></head><body>{body}</body></html>'
    )


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one browser serves the whole module


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@contextlib.asynccontextmanager
async def sites(ha: DemoHomeAssistant, tmp_path: Path, **bridge_settings: Any) -> AsyncIterator[tuple[str, LiveServer]]:
    """The host site (tmp_path, served on its own port) and the bridge, which lets it in by CORS."""
    async with live_server(settings_for(ha), web_dir=tmp_path) as site:
        settings = settings_for(
            ha, cors_origins=(site.url,), token_secret=Secret(SECRET), allowed_services=SERVICES, **bridge_settings
        )
        async with live_server(settings, web_dir=WEB_DIR) as bridge:
            yield site.url, bridge


@contextlib.asynccontextmanager
async def new_context(browser: Browser, **options: Any) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 900, "height": 700}, **options)
    await context.add_init_script(RECORD_EVENTS)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    # Errors the console logs (a CSP violation is one), but the host's missing favicon.
    context.on(
        "console",
        lambda m: (
            errors.append(f"{m.text} {m.location}")
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico")
            else None
        ),
    )
    expect.set_options(timeout=5000)
    try:
        yield context
    finally:
        await context.close()
    assert errors == [], "a page threw or logged an error"


def seq(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


def prefix(event_id: str) -> str:
    return event_id.rpartition("-")[0]


async def missed_events(page: Page) -> list[str]:
    """Where the ids do not follow on: each is the one before plus one, except a snapshot (the whole state),
    which may be a later one, or one of a bridge that restarted (its ids start over under a new prefix)."""
    seen: list[list[str]] = await page.evaluate("window.seen")
    assert seen and seen[0][0] == "snapshot", seen[:3]
    return [
        f"{name} {event_id} after {before} (seen: {seen})"
        for (_, before), (name, event_id) in zip(seen, seen[1:], strict=False)
        if not (
            name == "snapshot"
            and (seq(event_id) >= seq(before) or prefix(event_id) != prefix(before))
            or seq(event_id) == seq(before) + 1
            and prefix(event_id) == prefix(before)
        )
    ]


async def test_ten_elements_on_another_origin_show_live_values_on_one_stream_in_the_page_locale(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(), TEN, lang="de-DE"))
        page = await context.new_page()
        started = time.monotonic()
        await page.goto(site + "/")
        await expect(page.locator("#battery")).to_have_text("50,0 %")
        assert time.monotonic() - started < 2.5, "live values within a second or two"
        await expect(page.locator("#solar")).to_have_text("1.200 W")
        await expect(page.locator("#solar-kw")).to_have_text("1.200,00 W")
        await expect(page.locator("#charger-state")).to_have_text("Off")
        await expect(page.locator("#brightness")).to_have_text("180")
        await expect(page.locator("live-status")).to_have_text("Live")
        await expect(page.locator("#battery-chart svg.plot")).to_be_visible()
        ha.set_state("sensor.solar_power", "1234.5")
        await expect(page.locator("#solar")).to_have_text("1.234,5 W")
        await expect(page.locator("#solar-kw")).to_have_text("1.234,50 W")
        await expect(page.locator("#solar-chart svg.plot")).to_have_attribute("data-appends", "1")
        await wait_streams(bridge.url, 1)
        await asyncio.sleep(0.5)
        assert bridge.service.hub.client_count == 1, "ten elements, one stream"
        assert await missed_events(page) == []


async def test_a_toggle_works_with_a_token_that_allows_it_and_is_not_offered_to_a_read_only_one(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        page = await context.new_page()
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(services=["switch.*"]), TEN))
        await page.goto(site + "/")
        switch = page.get_by_role("switch", name="Battery charger")
        await expect(switch).to_have_attribute("aria-checked", "false")
        await expect(switch).to_be_enabled()
        await switch.click()
        await expect(switch).to_have_attribute("aria-checked", "true")
        await expect(page.locator("#charger")).to_have_attribute("data-phase", "confirmed")
        assert [(c.service, c.entity_ids) for c in ha.service_calls] == [("turn_on", ["switch.charger"])]
        # The same token may not call light.*: that toggle is no switch, only the state.
        await expect(page.get_by_role("switch", name="Kitchen")).to_have_count(0)
        await expect(page.locator("#kitchen")).to_have_text("On")

        calls = len(ha.service_calls)
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(), TEN))
        await page.goto(site + "/")
        await expect(page.locator("#charger-state")).to_have_text("On")
        await expect(page.get_by_role("switch")).to_have_count(0)
        await page.locator("#charger").click()
        await asyncio.sleep(0.3)
        assert len(ha.service_calls) == calls, "a read-only viewer calls nothing"


async def test_an_element_added_later_shows_its_value_at_once_and_no_other_loses_an_event(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(), TEN))
        page = await context.new_page()
        await page.goto(site + "/")
        await expect(page.locator("#battery")).to_have_text("50.0 %")
        # An entity the stream carries already: its value is there in the same task.
        shown = await page.evaluate("""() => {
          const el = Object.assign(document.createElement("live-value"), { id: "late" });
          el.setAttribute("entity", "sensor.battery_level");
          document.body.append(el);
          return el.shadowRoot.textContent;
        }""")
        assert shown == "50.0 %"
        # A new entity: the stream is reopened with the larger union, its snapshot brings the value.
        await page.evaluate("""() => {
          const el = Object.assign(document.createElement("live-value"), { id: "house" });
          el.setAttribute("entity", "sensor.house_load");
          document.body.append(el);
        }""")
        await expect(page.locator("#house")).to_have_text("640 W", timeout=2000)
        ha.set_state("sensor.battery_level", "48.0")
        ha.set_state("sensor.house_load", "700")
        await expect(page.locator("#battery")).to_have_text("48.0 %")
        await expect(page.locator("#late")).to_have_text("48.0 %")
        await expect(page.locator("#house")).to_have_text("700 W")
        await wait_streams(bridge.url, 1)
        assert await missed_events(page) == []


async def test_a_restarted_bridge_is_resumed_with_last_event_id_and_no_element_misses_an_event(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resumed: list[str | None] = []
    admit = EventsEndpoint._admit

    def recording(self: EventsEndpoint, scope: Any) -> Any:
        result = admit(self, scope)
        if isinstance(result, tuple):
            resumed.append(result[2])  # the last event id the stream was opened with
        return result

    monkeypatch.setattr(EventsEndpoint, "_admit", recording)
    async with live_server(settings_for(ha), web_dir=tmp_path) as site, new_context(browser) as context:
        settings = settings_for(ha, cors_origins=(site.url,), token_secret=Secret(SECRET), retry_ms=300)
        page = await context.new_page()
        async with live_server(settings, web_dir=WEB_DIR) as bridge:
            port = bridge.port
            # Every entity of the home on the page: a stream that opens before the restarted bridge has
            # Home Assistant's first view sees its whole numbering, with no id skipped for an entity it
            # does not watch (sensor.house_load is not among the ten).
            every = TEN + '<live-value id="house" entity="sensor.house_load"></live-value>'
            (tmp_path / "index.html").write_text(host_page(bridge.url, token(), every))
            await page.goto(site.url + "/")
            await expect(page.locator("#battery")).to_have_text("50.0 %")
            ha.set_state("sensor.battery_level", "49.0")
            await expect(page.locator("#battery")).to_have_text("49.0 %")
        await expect(page.locator("live-status")).to_have_attribute("data-state", "reconnecting")
        ha.set_state("sensor.battery_level", "42.0")  # while the bridge is away
        async with live_server(settings, port=port, web_dir=WEB_DIR):
            await expect(page.locator("#battery")).to_have_text("42.0 %", timeout=8000)
            await expect(page.locator("live-status")).to_have_text("Live")
            ha.set_state("sensor.solar_power", "900")
            await expect(page.locator("#solar")).to_have_text("900 W")
        assert resumed[0] is None and len(resumed) >= 2
        assert all(r for r in resumed[1:]), f"every reconnect says where it was: {resumed}"
        assert await missed_events(page) == []


async def test_three_tabs_of_the_host_share_one_stream(ha: DemoHomeAssistant, browser: Browser, tmp_path: Path) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(services=["switch.*"]), TEN))
        pages = []
        for _ in range(3):
            page = await context.new_page()
            await page.goto(site + "/")
            await expect(page.locator("#battery")).to_have_text("50.0 %")
            pages.append(page)
        await wait_streams(bridge.url, 1)
        ha.set_state("sensor.battery_level", "47.5")
        for page in pages:
            await expect(page.locator("#battery")).to_have_text("47.5 %")
        await pages[2].get_by_role("switch", name="Battery charger").click()
        for page in pages:
            await expect(page.get_by_role("switch", name="Battery charger")).to_have_attribute("aria-checked", "true")
        await asyncio.sleep(0.5)
        assert bridge.service.hub.client_count == 1, "three tabs, one stream"
        for page in pages:
            assert await missed_events(page) == []


@pytest.mark.parametrize("policy", ["strict", "the docs'"])
async def test_a_page_with_a_strict_content_security_policy_works(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path, policy: str
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        # Nothing inline, no eval, no style attribute: only the bridge's scripts and connections.
        csp = (
            f"default-src 'none'; script-src {bridge.url}; connect-src {bridge.url}; style-src 'none'; "
            "img-src 'none'; base-uri 'none'; form-action 'none'"
        )
        if policy == "the docs'":
            csp = sample("kit-csp").strip().removeprefix("Content-Security-Policy: ")
            csp = csp.replace("https://bridge.example.com", bridge.url)
        head = f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(), TEN, head=head))
        page = await context.new_page()
        await page.goto(site + "/")
        await expect(page.locator("#battery")).to_have_text("50.0 %")
        await expect(page.locator("#battery-chart svg.plot")).to_be_visible()
        await expect(page.locator("live-status")).to_have_text("Live")
        # The chart's own stylesheet applied (a constructed sheet, which CSP allows): its line is not black.
        stroke = await page.locator("#battery-chart .line").evaluate("(el) => getComputedStyle(el).fill")
        assert stroke == "none"
    # new_context asserts no error was logged: a CSP violation is logged as one.


async def test_elements_have_accessible_names_and_values_are_announced_politely(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(services=["*.*"]), TEN))
        page = await context.new_page()
        await page.goto(site + "/")
        # role=status is a polite live region: a screen reader says the new value when it is idle.
        await expect(page.get_by_role("status", name="Home battery").first).to_have_text("50.0 %")
        await expect(page.get_by_role("status", name="Connection")).to_have_text("Live")
        await expect(page.get_by_role("switch", name="Battery charger")).to_be_visible()
        await expect(page.get_by_role("switch", name="Kitchen")).to_have_attribute("aria-checked", "true")
        await expect(page.get_by_role("img", name="Home battery: chart of the last")).to_be_visible()
        await expect(page.get_by_role("group", name="Chart range").first).to_be_visible()
        live = await page.locator("#charger").evaluate("(el) => el.shadowRoot.querySelector('[part=note]').ariaLive")
        assert live == "polite"


async def test_the_size_of_everything_a_page_loads_from_the_bridge(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        (tmp_path / "index.html").write_text(host_page(bridge.url, token(), TEN))
        page = await context.new_page()
        loaded: list[str] = []
        page.on("request", lambda r: loaded.append(r.url) if r.url.startswith(bridge.url) else None)
        await page.goto(site + "/")
        await expect(page.locator("#battery-chart svg.plot")).to_be_visible()
        scripts = sorted({url.split("?")[0] for url in loaded if not url.split("?")[0].endswith(("/events", "/api"))})
        scripts = [url for url in scripts if "/api/" not in url]
        assert [url.rsplit("/", 1)[1] for url in scripts] == ["chart.js", "kit.js", "stream.js"]
        raw = gzipped = 0
        async with httpx.AsyncClient() as client:
            for url in scripts:
                body = (await client.get(url)).content
                raw, gzipped = raw + len(body), gzipped + len(gzip.compress(body, 9))
                print(f"{url.rsplit('/', 1)[1]}: {len(body)} B raw, {len(gzip.compress(body, 9))} B gzipped")
        print(f"kit, everything a page loads: {raw} B raw, {gzipped} B gzipped")
        # The issue aims at 12 KB gzipped, charts included: 16.2 KB when first written; 13.1 KB once the
        # SharedWorker went to worker.js (the bridge's page only), the comments were cut back, and the kit
        # took over the bridge page's cards (LiveKit.feed, the recorder's ranges); 14.0 KB with expand() for
        # the compact stream (issue 27, 0.9 KB once, against ~300 B less on every event). This holds it there.
        assert gzipped <= 14.0 * 1024


async def test_screenshots_light_dark_and_a_host_with_its_own_font_and_colours(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (tmp_path / "host.css").write_text(
        "body { font: 18px/1.5 Georgia, serif; background: #fdf6e3; color: #073642; margin: 2rem; }"
        "live-value { display: block; font-size: 1.6rem; }"
        "live-chart { --live-line: #eee8d5; width: 420px; }"
        "live-toggle { --live-ok: #859900; }" + sample("kit-css")  # the docs' example: gold units, a magenta chart
    )
    styled = '<link rel="stylesheet" href="host.css">'
    async with sites(ha, tmp_path) as (site, bridge):
        for name, scheme, head in (("light", "light", ""), ("dark", "dark", ""), ("host-styled", "light", styled)):
            async with new_context(browser, color_scheme=scheme) as context:
                dark = "<style>:root { color-scheme: dark; background: #0d1117; color: #e6edf3 }</style>"
                page_head = head + (dark if scheme == "dark" else "")
                (tmp_path / "index.html").write_text(
                    host_page(bridge.url, token(services=["*.*"]), TEN, head=page_head)
                )
                page = await context.new_page()
                await page.goto(site + "/")
                await expect(page.locator("#battery-chart svg.plot")).to_be_visible()
                await expect(page.locator("live-status")).to_have_text("Live")
                font = await page.locator("#battery").evaluate(
                    "(el) => getComputedStyle(el.shadowRoot.firstChild).fontFamily"
                )
                assert ("Georgia" in font) == (name == "host-styled"), "the elements take the page's font"
                await page.screenshot(path=ARTIFACTS / f"kit-{name}.png", full_page=True)


async def test_the_plain_html_example_of_the_docs_runs_as_written(
    ha: DemoHomeAssistant, browser: Browser, tmp_path: Path
) -> None:
    example = sample("kit-example")
    async with sites(ha, tmp_path) as (site, bridge), new_context(browser) as context:
        html = example.replace("https://bridge.example.com", bridge.url)
        html = html.replace("YOUR_READ_KEY_OR_TOKEN", token())
        (tmp_path / "index.html").write_text(f"<!doctype html><meta charset=utf-8>{html}")
        page = await context.new_page()
        await page.goto(site + "/")
        await expect(page.locator("#battery")).to_have_text("50.0 %")
        await expect(page.locator("#solar")).to_have_text("1,200 W")
        await expect(page.locator("live-status")).to_have_text("Live")
        await expect(page.locator("live-chart svg.plot")).to_be_visible()


def test_a_typescript_app_type_checks_against_kit_d_ts(tmp_path: Path) -> None:
    """kit.d.ts as an app would use it: the elements in the DOM and in JSX, the events' payloads."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sse_service" / "node"
    tsc = cache / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"typescript is not installed in {cache} (tests/run installs it with npm)")
        pytest.skip("typescript is not installed here (tests/run installs it with npm)")
    (tmp_path / "kit.d.ts").write_text((WEB_DIR / "kit.d.ts").read_text())
    (tmp_path / "app.tsx").write_text(
        'import type { CommandAnswer, EntityState, StreamEvents } from "./kit";\n'
        'const value = document.querySelector("live-value");\n'
        "const shown: EntityState | undefined = value?.state;\n"
        'document.addEventListener("live-event", (event) => {\n'
        '  if (event.detail.name === "state") console.log(event.detail.data.entity_id, shown);\n'
        '  if (event.detail.name === "snapshot") console.log(event.detail.data.can_call, event.detail.data.cause);\n'
        "});\n"
        'const status: StreamEvents["status"] = { status: "starting", reason: "", cause: "redis", since: "" };\n'
        'const answer: CommandAnswer = { ok: true, service: "switch.turn_on", entity_id: ["switch.charger"] };\n'
        "export const Page = () => (\n"
        '  <main><live-status /><live-value entity="sensor.battery_level" digits={1} /><live-chart entity="x" />'
        '<live-toggle entity="switch.charger" data-key="k" /></main>\n'
        ");\n"
        "console.log(status, answer);\n"
    )
    (tmp_path / "wrong.ts").write_text(
        'import type { StreamEvents } from "./kit";\n'
        'export const status: StreamEvents["status"] = { status: "sleeping", reason: "", cause: "redis", since: "" };\n'
    )
    env = {**os.environ, "NODE_PATH": str(cache / "node_modules")}
    common = ["--noEmit", "--strict", "--jsx", "react-jsx", "--lib", "dom,es2022", "--types", "react"]
    common += ["--typeRoots", str(cache / "node_modules" / "@types"), "--moduleResolution", "bundler"]
    common += ["--module", "esnext", "--skipLibCheck", "false"]
    ok = subprocess.run([str(tsc), *common, str(tmp_path / "app.tsx")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # It can fail: a status the bridge never sends is a type error.
    wrong = subprocess.run([str(tsc), *common, str(tmp_path / "wrong.ts")], capture_output=True, text=True, env=env)
    assert wrong.returncode != 0 and "sleeping" in wrong.stdout, wrong.stdout
