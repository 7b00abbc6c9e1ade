"""The stream's events are applied in one place, ``reduce`` in web/stream.js (issue 24), in Chromium.

The SharedWorker, the Web Lock holder, a tab's own Feed and the page all keep their view with it.
One test feeds it a sequence of events (a resume and a remove among them) and checks each view;
the other checks, against a real bridge, that a page holds the same view as the Feed it listens to.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from sse_service.app import WEB_DIR
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import live_server, settings_for
from .test_page import BOTH_WAYS, NO_SHARED_WORKER, bridge_has, card, chromium

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one browser serves the whole module


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A tab in a fresh context (as in test_page): ``"per-tab"`` takes SharedWorker away first."""
    context = await browser.new_context()
    if getattr(request, "param", "shared") == "per-tab":
        await context.add_init_script(NO_SHARED_WORKER)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect.set_options(timeout=5000)
    yield page
    await context.close()
    assert errors == [], "the page threw"


T0 = 1_704_110_400  # 2024-01-01 12:00:00 UTC, in seconds: every state below is at T0 + its `s`

# Every step's view (a copy), then a Feed seeded from the last one as a tab's resume.
SEQUENCE = """(T0) => {
  const at = (s) => new Date((T0 + s) * 1000).toISOString();
  const st = (entity_id, state, s) => ({ entity_id, state, attributes: {}, last_changed: at(s), last_updated: at(s) });
  const views = [];
  let view = null;
  const step = (name, data) => { view = reduce(view, name, data); views.push(structuredClone(view)); };
  step("state", st("sensor.a", "1", 0)); // before any snapshot: nothing to apply it to
  step("snapshot", { status: "connected", reason: "", heartbeat: 5,
    entities: { "sensor.a": st("sensor.a", "1.5", 10), "light.b": st("light.b", "on", 10) },
    history: { "sensor.a": [[T0, 1]] } });
  step("state", st("sensor.a", "1.5", 20)); // the same number: no new point
  step("state", st("sensor.a", "2", 30));
  step("state", st("sensor.c", "3", 31)); // an entity the snapshot did not have
  step("state", st("light.b", "off", 32));
  step("status", { status: "disconnected", reason: "Redis is unreachable", cause: "redis", since: at(40) });
  step("ping", {});
  step("busy", { message: "at its limit" });
  step("history", { history: { "sensor.a": [[T0, 5], [T0 + 1, 6]], "gone.x": [[T0, 1]] } });
  step("remove", { entity_id: "light.b" });

  // A worker that starts after another died resumes from a tab's view and last event id.
  const emitted = [];
  const feed = new Feed("https://bridge.test/events", (message) => emitted.push(message));
  feed.seed({ id: "7", view: structuredClone(view) });
  feed.seed({ id: "99", view: { status: "connecting", entities: {}, history: {} } }); // a second seed is ignored
  const receive = (name, id, data) => feed.receive(name, { lastEventId: id, data: JSON.stringify(data) });
  receive("state", "8", st("sensor.a", "4", 50));
  receive("remove", "9", { entity_id: "sensor.c" });
  const resumed = { view: structuredClone(feed.view), id: feed.current().id, events: emitted.map((m) => m.name) };

  view = feed.view;
  step("snapshot", { status: "disconnected", reason: "Redis is still unreachable",
    entities: { "sensor.a": st("sensor.a", "4", 50) }, history: { "sensor.a": [[T0, 3]] } });
  step("snapshot", { status: "connected", reason: "", entities: {}, history: {} });
  step("snapshot", { ...view, since: 123 }); // a view passed on by a Feed knows since when
  const many = Array.from({ length: 2000 }, (_, i) => [T0 + i, i % 7]); // KEEP points, the last 1999 % 7 = 4
  step("snapshot", { status: "connected", entities: { "sensor.a": st("sensor.a", "4", 1999) },
    history: { "sensor.a": many } });
  step("state", st("sensor.a", "100", 3000)); // one point past KEEP: the older half is thinned
  return { views, resumed, now: Date.now() };
}"""


def points(*pairs: tuple[int, float]) -> list[list[float]]:
    return [[T0 + s, value] for s, value in pairs]


async def test_one_reducer_applies_snapshot_state_status_history_and_remove_and_a_feed_resumes_from_a_view(
    page: Page,
) -> None:
    await page.set_content("<!doctype html><title>reduce</title>")
    await page.add_script_tag(content=(WEB_DIR / "stream.js").read_text())
    started = time.time() * 1000
    result: dict[str, Any] = await page.evaluate(SEQUENCE, T0)
    views, resumed, now = result["views"], result["resumed"], result["now"]

    assert views[0] is None, "a state before any snapshot has nothing to change"
    first = views[1]
    assert started <= first["since"] <= now, "a new status counts from now"
    assert {k: v for k, v in first.items() if k not in ("entities", "since")} == {
        "status": "connected",
        "reason": "",
        "cause": "",
        "heartbeat": 5,
        "can_call": True,  # a snapshot without the field (a bridge from before it): toggles as they were
        "history": {"sensor.a": points((0, 1), (10, 1.5)), "light.b": []},
    }
    assert list(first["entities"]) == ["sensor.a", "light.b"]
    assert views[2]["history"]["sensor.a"] == points((0, 1), (10, 1.5)), "an unchanged number adds no point"
    assert views[2]["entities"]["sensor.a"]["last_updated"] == "2024-01-01T12:00:20.000Z"
    assert views[3]["history"]["sensor.a"] == points((0, 1), (10, 1.5), (30, 2))
    assert views[4]["history"]["sensor.c"] == points((31, 3))
    assert views[5]["history"]["light.b"] == [] and views[5]["entities"]["light.b"]["state"] == "off"
    down = views[6]
    assert (down["status"], down["reason"], down["cause"]) == ("disconnected", "Redis is unreachable", "redis")
    assert down["since"] == (T0 + 40) * 1000
    assert views[7] == down and views[8] == down, "ping and busy change no view"
    assert views[9]["history"]["sensor.a"] == points((0, 5), (1, 6))
    assert "gone.x" not in views[9]["history"], "history for an entity not in the view is dropped"
    removed = views[10]
    assert list(removed["entities"]) == list(removed["history"]) == ["sensor.a", "sensor.c"]

    assert resumed["id"] == "9" and resumed["events"] == ["state", "remove"]
    assert list(resumed["view"]["entities"]) == ["sensor.a"]
    assert resumed["view"]["history"] == {"sensor.a": points((0, 5), (1, 6), (50, 4))}
    assert resumed["view"]["since"] == down["since"] and resumed["view"]["heartbeat"] == 5

    same = views[11]
    assert same["since"] == down["since"], "a snapshot with the same status keeps since when"
    assert (same["reason"], same["cause"], same["heartbeat"]) == ("Redis is still unreachable", "", 5)
    assert same["history"] == {"sensor.a": points((0, 3), (50, 4))}
    back = views[12]
    assert started <= back["since"] <= now and back["since"] != down["since"]
    assert back["heartbeat"] == 5, "a snapshot without a heartbeat keeps the last one"
    assert views[13]["since"] == 123

    full, thinned = views[14]["history"]["sensor.a"], views[15]["history"]["sensor.a"]
    assert len(full) == 2000
    assert thinned == [*thin(full[:1000]), *full[1000:], [T0 + 3000, 100]], "the newer half stays as it was"


def thin(points: list[list[float]]) -> list[list[float]]:
    """The older half's thinning, as the bridge and the page do it: of every four points the lowest and the highest."""
    kept = []
    for i in range(0, len(points), 4):
        group = points[i : i + 4]
        lo = min(group, key=lambda p: p[1])  # the first of equals, as stream.js keeps it
        hi = max(group, key=lambda p: p[1])
        kept += [lo] if lo is hi else sorted([lo, hi])
    return kept


# Without ``since``: each reduces the first snapshot at its own moment.
VIEW = "(v) => { const { since, ...rest } = v; return rest; }"


@BOTH_WAYS
async def test_the_page_holds_the_same_view_as_the_feed_it_listens_to(ha: DemoHomeAssistant, page: Page) -> None:
    async with live_server(settings_for(ha), web_dir=WEB_DIR) as live:
        await page.goto(live.url + "/")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        for value in ("61.0", "62.5"):
            ha.set_state("sensor.battery_level", value)
            await expect(card(page, "sensor.battery_level").locator("[part=number]")).to_have_text(value)
        ha.remove_state("light.kitchen")
        await expect(card(page, "light.kitchen")).to_have_count(0)
        await bridge_has(live, "sensor.battery_level", "62.5")

        # The page's view is the one its kit elements render from (app.js feeds the kit's hub).
        mine = await page.evaluate(f"({VIEW})(hub.view)")
        if await page.evaluate("link instanceof Feed"):  # per tab: the page's Feed is right here
            feeds = await page.evaluate(f"({VIEW})(link.view)")
        else:  # shared: a tab that joins now gets the worker's view
            late = await page.context.new_page()
            await late.goto(live.url + "/")
            await expect(late.locator("#conn")).to_have_attribute("data-state", "live")
            feeds = await late.evaluate(f"({VIEW})(hub.view)")
        assert mine == feeds
        assert "light.kitchen" not in mine["entities"] and mine["entities"]["sensor.battery_level"]["state"] == "62.5"
        assert mine["history"]["sensor.battery_level"][-1][1] == 62.5
        shown = await page.evaluate("[...document.querySelectorAll('.card')].map((el) => el.dataset.entity)")
        assert shown == list(mine["entities"]), "the page shows what its view holds"
