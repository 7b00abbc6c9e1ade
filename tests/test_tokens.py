"""Signed tokens (issue 16): every refusal, each token's exact view, commands, expiry, the CLI, the docs' snippets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from sse_service.access import Denied, Keys
from sse_service.config import ConfigError, Secret, load_settings
from sse_service.filters import AllOf, EntityPattern, combine
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.logs import RedactingFormatter
from sse_service.tokens import TokenRefused, TokenVerifier, mint, parse_expiry

from .helpers import (
    LiveServer,
    SSEStream,
    StreamEnded,
    free_port,
    live_server,
    live_server_in_thread,
    open_stream,
    settings_for,
)
from .samples import sample

SECRET = "token-secret-for-the-tests-5c1e9a0b7d3f"
OTHER_SECRET = "another-secret-not-this-bridges-8e2d4c6a"
READ_KEY = "read-key-3e9a1b7c5d2f4a60"
WRITE_KEY = "write-key-8d1f0c2b7a6e5d4c"
SWITCHES = ("switch.turn_on", "switch.turn_off", "switch.toggle")


def token(secret: str | None = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    return jwt.encode(claims, secret or "", algorithm=algorithm)


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def crafted(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    """A token with any header: what a forger sends (PyJWT cannot sign RS256 without cryptography)."""
    return f"{b64(header)}.{b64(payload)}.{b64(signature)}"


SOLAR: dict[str, Any] = {"entities": ["sensor.solar_*"], "sub": "public-site"}
TABLET: dict[str, Any] = {
    "entities": ["switch.charger", "sensor.battery_*"],
    "services": ["switch.turn_*"],
    "sub": "wall-tablet",
}


# --- verification -----------------------------------------------------------------------

VERIFIER = TokenVerifier(Secret(SECRET), revoked=("jti-revoked", "old-tablet"))
NOW = 1_800_000_000.0


def tampered() -> str:
    header, _, signature = token(**SOLAR).split(".")
    return f"{header}.{b64({'entities': ['*'], 'sub': 'public-site'})}.{signature}"


REFUSALS: list[tuple[str, Callable[[], str], str, str]] = [
    (
        "alg none",
        lambda: token(None, "none", **SOLAR),
        "invalid_token",
        "signed with 'none'; this bridge accepts HS256",
    ),
    (
        "HS512",
        lambda: token(SECRET * 2, "HS512", **SOLAR),
        "invalid_token",
        "signed with 'HS512'; this bridge accepts HS256",
    ),
    ("RS256", lambda: crafted({"alg": "RS256", "typ": "JWT"}, SOLAR), "invalid_token", "signed with 'RS256'"),
    ("no alg", lambda: crafted({"typ": "JWT"}, SOLAR), "invalid_token", "signed with no algorithm"),
    ("other secret", lambda: token(OTHER_SECRET, **SOLAR), "invalid_token", "signature does not match"),
    ("tampered payload", tampered, "invalid_token", "signature does not match"),
    ("expired", lambda: token(**SOLAR, exp=int(NOW) - 1), "token_expired", "the token expired at 2027-01-15T07:59:59Z"),
    ("expires now", lambda: token(**SOLAR, exp=int(NOW)), "token_expired", "the token expired at"),
    # PyJWT checks nbf and iat against the real clock.
    ("nbf ahead", lambda: token(**SOLAR, nbf=int(time.time()) + 3600), "token_not_yet_valid", "not valid before 20"),
    ("iat ahead", lambda: token(**SOLAR, iat=int(time.time()) + 3600), "token_not_yet_valid", "issued in the future"),
    ("not a JWT", lambda: "abc.def.ghi", "invalid_token", "not a well-formed JWT"),
    ("two parts", lambda: "eyJhbGciOiJIUzI1NiJ9.eyJ9", "invalid_token", "not a well-formed JWT"),
    ("too long", lambda: token(**SOLAR, pad="x" * 9000), "invalid_token", "longer than 8192 characters"),
    ("no entities", lambda: token(sub="x"), "invalid_token", "has no entities claim"),
    ("entities a number", lambda: token(entities=3), "invalid_token", "entities claim must be a list of strings"),
    ("entities of numbers", lambda: token(entities=[1, 2]), "invalid_token", "must be a list of strings"),
    ("entities empty", lambda: token(entities=[]), "invalid_token", "entities claim is empty"),
    ("entity without domain", lambda: token(entities=["solar"]), "invalid_token", "globs like 'sensor.solar_*'"),
    ("services a dict", lambda: token(**SOLAR, services={"a": 1}), "invalid_token", "services claim must be a list"),
    ("service glob", lambda: token(**SOLAR, services=["toggle"]), "invalid_token", "globs like 'switch.turn_*'"),
    ("sub a number", lambda: token(entities=["*"], sub=7), "invalid_token", "sub claim must be a non-empty string"),
    ("exp a string", lambda: token(**SOLAR, exp="tomorrow"), "invalid_token", "exp claim must be a number"),
    ("exp true", lambda: token(**SOLAR, exp=True), "invalid_token", "exp claim must be a number"),
    ("nbf a string", lambda: token(**SOLAR, nbf="soon"), "invalid_token", "Not Before claim (nbf) must be an integer"),
    # Out of range: a float() or a datetime of these overflowed, a 500 (issue 23).
    ("exp -10**400", lambda: token(**SOLAR, exp=-(10**400)), "invalid_token", "exp claim must be a number of seconds"),
    ("exp before year 1", lambda: token(**SOLAR, exp=-(10**14)), "invalid_token", "exp claim must be a number"),
    ("exp negative", lambda: token(**SOLAR, exp=-1), "invalid_token", "exp claim must be a number of seconds"),
    ("nbf true", lambda: token(**SOLAR, nbf=True), "invalid_token", "nbf claim must be a number of seconds"),
    ("iat -10**400", lambda: token(**SOLAR, iat=-(10**400)), "invalid_token", "iat claim must be a number of seconds"),
    ("audience", lambda: token(**SOLAR, aud="other-app"), "invalid_token", "names an audience (aud)"),
    ("revoked jti", lambda: token(**SOLAR, jti="jti-revoked"), "token_revoked", "has been revoked"),
    ("revoked sub", lambda: token(entities=["*"], sub="old-tablet"), "token_revoked", "has been revoked"),
]


@pytest.mark.parametrize(("make", "code", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_every_refusal_has_its_code_and_a_precise_message(make: Callable[[], str], code: str, message: str) -> None:
    credential = make()
    with pytest.raises(TokenRefused) as refused:
        VERIFIER.verify(credential, now=NOW)
    assert refused.value.code == code
    assert message in refused.value.message, refused.value.message
    signature = credential.split(".")[-1]
    assert credential not in refused.value.message and (not signature or signature not in refused.value.message)


def test_a_valid_token_gives_its_claims_and_a_little_clock_skew_is_forgiven_on_nbf_but_not_on_exp() -> None:
    claims = VERIFIER.verify(token(**TABLET, exp=int(NOW) + 60, jti="t1"), now=NOW)
    assert claims.entities == EntityPattern(["switch.charger", "sensor.battery_*"])
    assert claims.services("switch.turn_on") and not claims.services("switch.toggle")
    assert (claims.sub, claims.jti, claims.expires) == ("wall-tablet", "t1", NOW + 60)
    # A backend whose clock is 10 s ahead: its nbf is still accepted.
    assert VERIFIER.verify(token(**SOLAR, nbf=int(time.time()) + 10)).sub == "public-site"
    assert not VERIFIER.verify(token(**SOLAR)).services("switch.turn_on"), "no services claim: no services"
    assert VERIFIER.verify(token(entities="sensor.a, sensor.b")).entities == EntityPattern(["sensor.a", "sensor.b"])
    with pytest.raises(TokenRefused):
        VERIFIER.verify(token(**SOLAR, exp=int(NOW)), now=NOW + 0.001)


def test_an_absurd_exp_counts_as_the_far_future_instead_of_overflowing() -> None:
    claims = VERIFIER.verify(token(**SOLAR, exp=10**400))
    assert claims.expires is not None and 3e10 < claims.expires < 4e10


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=60), st.text(max_size=60), st.text(max_size=60)),
        st.builds(
            lambda h, p, s: f"{b64(h)}.{b64(p)}.{b64(s)}",
            st.binary(max_size=80),
            st.binary(max_size=80),
            st.binary(max_size=40),
        ),
        st.builds(
            lambda i, c: (lambda t: t[:i] + c + t[i + 1 :])(token(**SOLAR)), st.integers(0, 150), st.text(max_size=2)
        ),
        st.builds(
            lambda claims: token(**claims),
            st.dictionaries(
                st.sampled_from(["entities", "services", "exp", "nbf", "iat", "sub", "jti", "aud"]),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.floats(),
                    st.text(max_size=20),
                    st.lists(st.text(max_size=10)),
                ),
            ),
        ),
    )
)
def test_no_token_string_raises_anything_but_a_refusal(credential: str) -> None:
    try:
        VERIFIER.verify(credential)
    except TokenRefused as e:
        assert e.code in ("invalid_token", "token_expired", "token_not_yet_valid", "token_revoked")
        assert e.message and "\n" not in e.message and len(e.message) < 300


# --- filters ----------------------------------------------------------------------------


def test_a_tokens_view_and_a_streams_filter_make_one_intersection() -> None:
    token_view = EntityPattern(["sensor.*", "switch.charger"])
    stream_filter = EntityPattern.parse("sensor.solar_power,switch.*,light.kitchen")
    both = combine(token_view, stream_filter)
    assert isinstance(both, AllOf)
    assert [e for e in ("sensor.solar_power", "sensor.house_load", "switch.charger", "light.kitchen") if both(e)] == [
        "sensor.solar_power",
        "switch.charger",
    ]
    assert both.describe() == "sensor.*,switch.charger & sensor.solar_power,switch.*,light.kitchen"
    assert both == combine(EntityPattern(["sensor.*", "switch.charger"]), stream_filter), "equal views share frames"
    assert combine(None, None) is None
    assert combine(EntityPattern(["*"]), None) is None, "a token that sees everything stays an unfiltered stream"
    assert combine(EntityPattern(["*"]), stream_filter) is stream_filter
    nothing = combine(token_view, EntityPattern.parse(domains="light"))
    assert nothing is not None and not nothing("light.kitchen") and not nothing("sensor.a")


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TOKEN_SECRET": "too-short-31-bytes-0123456789ab"}, "TOKEN_SECRET: expected at least 32 bytes"),
        ({"TOKEN_SECRET": "has spaces in it but is long enough to count"}, "TOKEN_SECRET: expected at least 32"),
        ({"TOKEN_SECRET": SECRET, "READ_KEY": SECRET}, "TOKEN_SECRET: must differ from READ_KEY and WRITE_KEY"),
        ({"TOKEN_REVOKED": "a,b\x00c"}, "TOKEN_REVOKED: expected a comma-separated list"),
    ],
)
def test_token_settings_are_checked_with_one_line_naming_them_and_never_echo_the_secret(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert str(error.value).startswith(message), str(error.value)
    assert environ.get("TOKEN_SECRET", "--")[:20] not in str(error.value)


def test_the_token_secret_is_a_secret_and_is_redacted_from_logs() -> None:
    loaded = load_settings({"TOKEN_SECRET": f"  {SECRET} ", "TOKEN_REVOKED": "jti-1, guest-anna"})
    assert loaded.token_secret == Secret(SECRET) and SECRET not in repr(loaded)
    assert loaded.token_revoked == ("jti-1", "guest-anna")
    assert SECRET in loaded.secrets()
    formatter = RedactingFormatter("%(message)s", loaded.secrets())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops %s", (SECRET,), None)
    assert formatter.format(record) == "oops ***"


def test_with_a_token_secret_nothing_is_open_any_more() -> None:
    keys = Keys.from_settings(load_settings({"TOKEN_SECRET": SECRET}))
    assert not keys.open
    assert isinstance(keys.reader(Headers(), {}), Denied)
    assert isinstance(keys.writer(Headers()), Denied)
    assert Keys().reader(Headers(), {}) == Keys().writer(Headers()), "no keys and no secret: open, as before"


# --- end to end on a real server ---------------------------------------------------------


@pytest.fixture
async def bridge(ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
    ha.set_state("switch.porch", "off")
    settings = settings_for(
        ha,
        entities=("sensor.*", "switch.*"),  # light.kitchen is not exposed at all
        token_secret=Secret(SECRET),
        read_key=Secret(READ_KEY),
        write_key=Secret(WRITE_KEY),
        allowed_services=(*SWITCHES, "switch.lock"),
        command_rate=1e6,
        command_burst=1_000_000,
    )
    async with live_server(settings) as live:
        yield live


async def snapshot_of(live: LiveServer, query: str = "", headers: dict[str, str] | None = None) -> set[str]:
    async with open_stream(live.url + "/events" + query, headers) as stream:
        first = await stream.next()
        assert first.event == "snapshot"
        return set(first.json()["entities"])


async def states_of(live: LiveServer, query: str = "", headers: dict[str, str] | None = None) -> set[str]:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get("/api/states" + query, headers=headers)
    assert response.status_code == 200, response.text
    return set(response.json()["entities"])


async def changes_until(stream: SSEStream, entity_id: str, state: str) -> list[tuple[str, str]]:
    """(event, entity id) of every data event up to and including the given state of an entity."""
    seen: list[tuple[str, str]] = []
    while True:
        event = await stream.next()
        if event.event in ("state", "remove"):
            seen.append((event.event, event.json()["entity_id"]))
            if event.event == "state" and (event.json()["entity_id"], event.json()["state"]) == (entity_id, state):
                return seen


async def test_two_tokens_see_different_snapshots_and_events(bridge: LiveServer, ha: DemoHomeAssistant) -> None:
    solar, tablet = token(**SOLAR), token(**TABLET)
    async with (
        open_stream(f"{bridge.url}/events?token={solar}") as a,
        open_stream(f"{bridge.url}/events?token={tablet}") as b,
        open_stream(f"{bridge.url}/events?key={READ_KEY}") as everything,
    ):
        assert set((await a.next()).json()["entities"]) == {"sensor.solar_power"}
        assert set((await b.next()).json()["entities"]) == {"switch.charger", "sensor.battery_level"}
        assert set((await everything.next()).json()["entities"]) == {
            "sensor.battery_level",
            "sensor.solar_power",
            "sensor.house_load",
            "switch.charger",
            "switch.porch",
        }
        for entity_id, value in [
            ("sensor.house_load", "700"),
            ("switch.charger", "on"),
            ("sensor.solar_power", "1300"),
            ("switch.porch", "on"),
            ("sensor.battery_level", "51.0"),
        ]:
            ha.set_state(entity_id, value)
        ha.set_state("sensor.solar_power", "1301")  # the last event each stream waits for
        ha.set_state("sensor.battery_level", "51.5")
        assert await changes_until(a, "sensor.solar_power", "1301") == [("state", "sensor.solar_power")] * 2
        assert await changes_until(b, "sensor.battery_level", "51.5") == [
            ("state", "switch.charger"),
            ("state", "sensor.battery_level"),
            ("state", "sensor.battery_level"),
        ]
        assert len(await changes_until(everything, "sensor.battery_level", "51.5")) == 7
        # The hub's index serves them: each token is one filtered subscriber.
        hub = bridge.service.hub
        assert len(hub._full.filtered) == 2 and len(hub._full.everything) == 1
        assert {s.filter for s in hub._full.watchers["sensor.solar_power"]} == {EntityPattern(["sensor.solar_*"])}

        ha.remove_state("switch.charger")
        ha.remove_state("sensor.solar_power")
        assert (await a.until(lambda e: e.event == "remove")).json() == {"entity_id": "sensor.solar_power"}
        assert (await b.until(lambda e: e.event == "remove")).json() == {"entity_id": "switch.charger"}
        ha.set_state("sensor.battery_level", "52.0")
        assert (await b.next()).json()["state"] == "52.0", "b got no remove of an entity it does not see"


async def test_the_tokens_view_is_intersected_with_the_streams_own_filters(bridge: LiveServer) -> None:
    wide = token(entities=["sensor.*", "switch.charger"], sub="family")
    cases = [
        ("", {"sensor.battery_level", "sensor.solar_power", "sensor.house_load", "switch.charger"}),
        ("&entity_id=sensor.solar_power,switch.*,light.kitchen", {"sensor.solar_power", "switch.charger"}),
        ("&domain=switch", {"switch.charger"}),
        ("&domain=light", set()),
    ]
    for query, expected in cases:
        assert await snapshot_of(bridge, f"?token={wide}{query}") == expected, query
        assert await states_of(bridge, f"?token={wide}{query}") == expected, query
    # A token that names everything still sees only what ENTITIES exposes.
    assert "light.kitchen" not in await snapshot_of(bridge, f"?token={token(entities=['*'])}")


@pytest.mark.parametrize("where", ["?token=", "?key=", "bearer", "cookie"])
async def test_a_token_is_accepted_wherever_a_key_is_and_the_keys_keep_working(bridge: LiveServer, where: str) -> None:
    credential = token(**SOLAR)
    query, headers = {
        "?token=": (f"?token={credential}", {}),
        "?key=": (f"?key={credential}", {}),
        "bearer": ("", {"authorization": f"Bearer {credential}"}),
        "cookie": ("", {"cookie": f"theme=dark; sse_key={credential}"}),
    }[where]
    assert await snapshot_of(bridge, query, headers) == {"sensor.solar_power"}
    assert await states_of(bridge, query, headers) == {"sensor.solar_power"}
    key_query, key_headers = (
        query.replace(credential, READ_KEY),
        {k: v.replace(credential, READ_KEY) for k, v in headers.items()},
    )
    assert len(await snapshot_of(bridge, key_query, key_headers)) == 5


async def test_a_valid_credential_wins_over_a_bad_one_and_the_first_bad_token_is_the_one_explained(
    bridge: LiveServer,
) -> None:
    expired = token(**SOLAR, exp=int(time.time()) - 5)
    good = token(**TABLET)
    # An old cookie does not spoil a fresh token in the URL.
    assert await snapshot_of(bridge, f"?token={good}", {"cookie": f"sse_key={expired}"}) == {
        "switch.charger",
        "sensor.battery_level",
    }
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        response = await client.get(f"/events?token={expired}", headers={"cookie": "sse_key=wrong-key-1234567890"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "alg none": lambda: token(None, "none", **SOLAR),
    "HS384": lambda: token(SECRET * 2, "HS384", **SOLAR),
    "other secret": lambda: token(OTHER_SECRET, **SOLAR),
    "expired": lambda: token(**SOLAR, exp=int(time.time()) - 1),
    "not yet valid": lambda: token(**SOLAR, nbf=int(time.time()) + 600),
    "garbage": lambda: "eyJ.e30.AAAA",
}
CODES = {"expired": "token_expired", "not yet valid": "token_not_yet_valid"}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
@pytest.mark.parametrize("path", ["/events", "/api/states", "/api/states/sensor.solar_power", "/metrics"])
async def test_a_refused_token_is_a_401_with_a_json_error_on_every_read_route(
    bridge: LiveServer, kind: str, path: str
) -> None:
    credential = BAD_TOKENS[kind]()
    async with httpx.AsyncClient(base_url=bridge.url, timeout=5) as client:
        for response in (
            await client.get(f"{path}?token={credential}", headers={"accept": "text/event-stream"}),
            await client.get(path, headers={"authorization": f"Bearer {credential}"}),
        ):
            # A browser's EventSource fails for good on any status but 200 (HTML spec, "fail the
            # connection"): a refused token stops it, and a JSON body says why to everyone else.
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/json"
            assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            error = response.json()["error"]
            assert error["code"] == CODES.get(kind, "invalid_token")
            assert credential not in response.text and SECRET not in response.text


async def test_rest_reads_show_only_the_tokens_view(bridge: LiveServer) -> None:
    solar = {"authorization": f"Bearer {token(**SOLAR)}"}
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        mine = await client.get("/api/states/sensor.solar_power", headers=solar)
        not_mine = await client.get("/api/states/switch.charger", headers=solar)
        nowhere = await client.get("/api/states/switch.nothing", headers=solar)
        history = await client.get("/api/history/switch.charger", headers=solar)
        own_history = await client.get("/api/history/sensor.solar_power", headers=solar)
    assert mine.status_code == 200 and mine.json()["state"] == "1200"
    # Outside the view looks exactly like an entity that does not exist.
    assert (not_mine.status_code, nowhere.status_code, history.status_code) == (404, 404, 404)
    assert not_mine.json() == {"error": {"code": "unknown_entity", "message": "no exposed entity 'switch.charger'"}}
    assert nowhere.json()["error"]["message"] == "no exposed entity 'switch.nothing'"
    assert history.json()["error"]["code"] == "unknown_entity"
    assert own_history.status_code != 404


async def test_a_resume_replays_only_the_tokens_view(bridge: LiveServer, ha: DemoHomeAssistant) -> None:
    async with open_stream(f"{bridge.url}/events?key={READ_KEY}") as stream:
        last_id = (await stream.next()).id
    ha.set_state("switch.charger", "on")
    ha.set_state("sensor.solar_power", "1500")
    ha.remove_state("switch.porch")
    ha.set_state("sensor.house_load", "900")
    await asyncio.sleep(0.2)
    async with open_stream(f"{bridge.url}/events?token={token(**TABLET)}", {"last-event-id": last_id or ""}) as stream:
        first = await stream.next()
        assert (first.event, first.json()["entity_id"], first.json()["state"]) == ("state", "switch.charger", "on")
        ha.set_state("sensor.battery_level", "60.0")
        assert (await stream.next()).json()["entity_id"] == "sensor.battery_level", "nothing else was replayed"
    assert bridge.service.hub.replays == 1


async def test_history_events_for_open_streams_follow_the_tokens_view(bridge: LiveServer) -> None:
    async with open_stream(f"{bridge.url}/events?token={token(**SOLAR)}") as stream:
        await stream.next()
        now = time.time()
        past = [(now - 3600, 1.0), (now - 1800, 2.0)]
        bridge.service.log.upstream_history({"sensor.solar_power": past, "sensor.house_load": past})
        event = await stream.until(lambda e: e.event == "history")
    assert list(event.json()["history"]) == ["sensor.solar_power"]


# --- commands ---------------------------------------------------------------------------


async def command(live: LiveServer, service: str, entity_id: str, headers: dict[str, str]) -> httpx.Response:
    domain, name = service.split(".")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        return await client.post(f"/api/services/{domain}/{name}", json={"entity_id": entity_id}, headers=headers)


async def test_commands_follow_the_tokens_services_and_entities(bridge: LiveServer, ha: DemoHomeAssistant) -> None:
    tablet = {"authorization": f"Bearer {token(**TABLET)}"}
    ok = await command(bridge, "switch.turn_on", "switch.charger", tablet)
    assert ok.status_code == 200, ok.text
    assert ha.service_calls[-1].entity_ids == ["switch.charger"]
    calls = len(ha.service_calls)

    refused = [
        # (service, entity, headers, status, code, words)
        ("switch.toggle", "switch.charger", tablet, 403, "service_not_allowed", "not allowed for this token"),
        ("light.turn_on", "switch.charger", tablet, 403, "service_not_allowed", "not allowed here"),
        ("switch.turn_on", "switch.porch", tablet, 403, "entity_not_allowed", "not allowed for this token"),
        ("switch.turn_on", "light.kitchen", tablet, 403, "entity_not_allowed", "not exposed by this bridge"),
        (
            "switch.turn_on",
            "switch.charger",
            {"authorization": f"Bearer {token(**SOLAR)}"},
            403,
            "service_not_allowed",
            "not allowed for this token",
        ),
        (
            "switch.turn_on",
            "switch.charger",
            {"authorization": f"Bearer {token(**TABLET, exp=int(time.time()) - 1)}"},
            401,
            "token_expired",
            "expired at",
        ),
        (
            "switch.turn_on",
            "switch.charger",
            {"authorization": f"Bearer {token(OTHER_SECRET, **TABLET)}"},
            401,
            "invalid_token",
            "signature does not match",
        ),
        # Only the header carries a credential for commands: never a cookie or the URL.
        (
            "switch.turn_on",
            "switch.charger",
            {"cookie": f"sse_key={token(**TABLET)}"},
            401,
            "unauthorized",
            "Authorization: Bearer",
        ),
    ]
    for service, entity_id, headers, status, code, words in refused:
        response = await command(bridge, service, entity_id, headers)
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (status, code), (service, entity_id, response.text)
        assert words in error["message"], error["message"]
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        in_url = await client.post(
            f"/api/services/switch/turn_on?token={token(**TABLET)}", json={"entity_id": "switch.charger"}
        )
    assert in_url.status_code == 401
    assert len(ha.service_calls) == calls, "nothing refused reached Home Assistant"

    # ALLOWED_SERVICES narrows a token's services: switch.* does not reach switch.reboot.
    wide = {"authorization": f"Bearer {token(entities=['switch.*'], services=['switch.*'])}"}
    assert (await command(bridge, "switch.turn_off", "switch.porch", wide)).status_code == 200
    assert (
        (await command(bridge, "switch.reboot", "switch.porch", wide))
        .json()["error"]["message"]
        .endswith("is not allowed here")
    )
    # The write key keeps working next to tokens.
    assert (await command(bridge, "switch.toggle", "switch.porch", {"authorization": f"Bearer {WRITE_KEY}"})).is_success


async def test_a_bridge_with_only_a_token_secret_needs_a_token_to_read_or_act(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, token_secret=Secret(SECRET), allowed_services=SWITCHES)) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            anonymous = await client.get("/api/states")
            assert anonymous.status_code == 401
            assert "read key or token" in anonymous.json()["error"]["message"]
            assert (await client.get("/events")).status_code == 401
        response = await command(live, "switch.turn_on", "switch.charger", {})
        assert response.status_code == 401 and "a valid token is required" in response.json()["error"]["message"]
        assert await states_of(live, f"?token={token(**SOLAR)}") == {"sensor.solar_power"}
        allowed = await command(
            live, "switch.turn_on", "switch.charger", {"authorization": f"Bearer {token(**TABLET)}"}
        )
        assert allowed.status_code == 200


async def test_a_token_on_a_bridge_without_a_token_secret_is_told_so(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, read_key=Secret(READ_KEY))) as live, httpx.AsyncClient() as client:
        response = await client.get(f"{live.url}/api/states?token={token(**SOLAR)}")
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("this bridge accepts no tokens (TOKEN_SECRET is not set)")


# --- expiry -----------------------------------------------------------------------------


async def test_a_stream_ends_at_exp_with_event_expired_and_a_new_token_resumes_it(
    bridge: LiveServer, ha: DemoHomeAssistant
) -> None:
    exp = int(time.time()) + 2
    old = token(**SOLAR, exp=exp)
    async with open_stream(f"{bridge.url}/events?token={old}") as stream:
        assert (await stream.next()).event == "snapshot"
        ha.set_state("sensor.solar_power", "1300")
        assert (await stream.next()).json()["state"] == "1300"
        last_id = stream.last_event_id
        expired = await stream.next(timeout=4)
        at = time.time()
        assert expired.event == "expired" and expired.id is None, "no id: Last-Event-ID stays on the last event"
        assert exp <= at < exp + 0.5, f"ended {at - exp:+.3f} s from exp"
        body = expired.json()
        assert body["code"] == "token_expired" and "get a new one" in body["message"]
        assert body["expired_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
        await stream.wait_ended(timeout=2)
        assert stream.retry == body["retry_ms"] == 5000, "the page has time to fetch a new token first"
        assert stream.last_event_id == last_id

    ha.set_state("sensor.solar_power", "1400")  # missed while the page fetched its new token
    ha.set_state("switch.charger", "on")
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        again = await client.get(f"/events?token={old}", headers={"last-event-id": last_id or ""})
    assert again.status_code == 401 and again.json()["error"]["code"] == "token_expired"
    async with open_stream(
        f"{bridge.url}/events?token={token(**SOLAR, exp=exp + 60)}", {"last-event-id": last_id or ""}
    ) as resumed:
        first = await resumed.next()
        assert (first.event, first.json()["state"]) == ("state", "1400"), "exactly the missed event, no snapshot"


async def test_the_expiry_comes_before_a_longer_max_stream_age_and_after_a_shorter_one(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, token_secret=Secret(SECRET), max_stream_age=1.0)
    async with live_server(settings) as live:
        async with open_stream(f"{live.url}/events?token={token(**SOLAR, exp=int(time.time()) + 30)}") as stream:
            await stream.next()
            with pytest.raises(StreamEnded):
                await stream.next(timeout=3)
            assert stream.retry == 500, "max age: back at once"
    async with live_server(dataclasses.replace(settings, max_stream_age=60.0)) as live:
        async with open_stream(f"{live.url}/events?token={token(**SOLAR, exp=int(time.time()) + 2)}") as stream:
            await stream.next()
            assert (await stream.next(timeout=4)).event == "expired"


# --- logs and metrics name the sub --------------------------------------------------------


async def test_logs_and_metrics_name_the_sub_cleaned_never_the_token(
    bridge: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    forged = token(entities=["sensor.*"], services=["switch.*"], sub="kiosk\r\nINFO forged line")
    solar = token(**SOLAR)
    async with (
        open_stream(f"{bridge.url}/events?token={solar}") as a,
        open_stream(f"{bridge.url}/events?token={solar}&domain=sensor") as b,
        open_stream(f"{bridge.url}/events?token={forged}") as c,
    ):
        for stream in (a, b, c):
            await stream.next()
        async with httpx.AsyncClient(base_url=bridge.url) as client:
            metrics = (await client.get("/metrics", headers={"authorization": f"Bearer {WRITE_KEY}"})).text
            narrow = await client.get("/metrics", headers={"authorization": f"Bearer {solar}"})
            seeing_all = await client.get(f"/metrics?token={token(entities=['*'], sub='ops')}")
        await command(bridge, "switch.turn_on", "switch.charger", {"authorization": f"Bearer {forged}"})
        await command(bridge, "switch.turn_on", "switch.charger", {"authorization": f"Bearer {token(**TABLET)}"})
    assert 'sse_token_streams{sub="public-site"} 2.0' in metrics
    assert 'sse_token_streams{sub="kiosk??INFO forged line"} 1.0' in metrics
    assert (narrow.status_code, narrow.json()["error"]["code"]) == (403, "forbidden"), "a public token names no others"
    assert seeing_all.status_code == 200
    async with httpx.AsyncClient(base_url=bridge.url) as client, asyncio.timeout(5):
        while True:  # the server notices the closed streams a moment later
            after = (await client.get("/metrics", headers={"authorization": f"Bearer {WRITE_KEY}"})).text
            if 'sse_token_streams{sub="public-site"}' not in after:
                break
            await asyncio.sleep(0.05)
    assert 'sse_token_commands_total{outcome="entity_not_allowed",sub="kiosk??INFO forged line"} 1.0' in after
    assert 'sse_token_commands_total{outcome="ok",sub="wall-tablet"} 1.0' in after

    # The service's own lines (the test's HTTP client logs its URLs; test_secrets.py reads a
    # real process's whole log, uvicorn's included).
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("sse_service")]
    assert any(
        re.search(r"Stream opened for 127\.0\.0\.1, token public-site \(filter sensor\.solar_\*,", m) for m in lines
    )
    assert any("token kiosk??INFO forged line" in m for m in lines)
    assert any("Command switch.turn_on on switch.charger from 127.0.0.1, token wall-tablet: ok" in m for m in lines)
    for message in (m for m in lines if "token" in m):
        assert "\n" not in message and "\r" not in message
        for credential in (solar, forged):
            assert credential not in message and credential.split(".")[2] not in message
    assert SECRET not in caplog.text


# --- the CLI and the docs ----------------------------------------------------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HA_", "TOKEN_", "ENTITIES", "CONFIG_FILE"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sse_service", *args], env=clean, capture_output=True, text=True, timeout=30
    )


def test_the_token_command_prints_a_token_signed_with_the_services_secret() -> None:
    started = time.time()
    result = run_cli(
        "token",
        "--entities",
        "sensor.solar_*",
        "--services",
        "switch.turn_*",
        "--expires",
        "7d",
        "--name",
        "public-site",
        TOKEN_SECRET=SECRET,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert "\n" not in printed
    claims = jwt.decode(printed, SECRET, algorithms=["HS256"])
    assert claims["entities"] == ["sensor.solar_*"] and claims["services"] == ["switch.turn_*"]
    assert claims["sub"] == "public-site" and claims["jti"]
    assert started + 7 * 86400 <= claims["exp"] <= time.time() + 7 * 86400 + 1
    assert jwt.get_unverified_header(printed)["alg"] == "HS256"
    assert "public-site" in result.stderr and SECRET not in result.stderr + result.stdout
    verified = TokenVerifier(Secret(SECRET)).verify(printed)
    assert verified.entities("sensor.solar_power") and not verified.entities("switch.charger")

    # Without --expires it never expires.
    plain = run_cli("token", "--entities", "sensor.*", TOKEN_SECRET=SECRET)
    assert "exp" not in jwt.decode(plain.stdout.strip(), SECRET, algorithms=["HS256"])


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (["--entities", "sensor.*"], {}, "TOKEN_SECRET: required to sign tokens"),
        (["--entities", "sensor.*"], {"TOKEN_SECRET": "short-secret-0123"}, "TOKEN_SECRET: expected at least 32"),
        (["--entities", "solar"], {"TOKEN_SECRET": SECRET}, "--entities: expected entity ids or globs"),
        (["--entities", "sensor.*", "--services", "toggle"], {"TOKEN_SECRET": SECRET}, "--services: expected"),
        (["--entities", "sensor.*", "--expires", "soon"], {"TOKEN_SECRET": SECRET}, "--expires: expected a duration"),
        (["--entities", "sensor.*", "--expires", "2001-01-01"], {"TOKEN_SECRET": SECRET}, "--expires: '2001-01-01' is"),
    ],
)
def test_the_token_command_refuses_with_one_line(args: list[str], env: dict[str, str], setting: str) -> None:
    result = run_cli("token", *args, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sse-service: configuration error: {setting}"), result.stderr
    assert result.stdout == "" and "short-secret-0123" not in result.stderr


def test_expiry_durations_and_times() -> None:
    assert parse_expiry("7d", now=0) == 7 * 86400
    assert parse_expiry("90", now=10) == 100
    assert parse_expiry("2w", now=0) == 14 * 86400
    assert parse_expiry("2099-01-01T00:00:00Z", now=0) == 4070908800
    for bad in ("0s", "-1d", "11000d", "1y", ""):
        with pytest.raises(ValueError):
            parse_expiry(bad, now=0)


async def test_the_docs_python_snippet_mints_a_token_the_bridge_accepts(bridge: LiveServer) -> None:
    snippet = sample("token-snippet-python")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        snippet + "\nprint(bridge_token(['sensor.solar_*'], name='public-site'))\n",
        env={**os.environ, "TOKEN_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    minted = out.decode().strip()
    assert await snapshot_of(bridge, f"?token={minted}") == {"sensor.solar_power"}
    assert jwt.decode(minted, SECRET, algorithms=["HS256"])["exp"] > time.time() + 3000
    assert "bridge_token" in sample("token-snippet-python")
    assert "jwt.sign" in sample("token-snippet-node")


def test_the_docs_node_snippet_parses_and_mints_a_token_where_jsonwebtoken_is_installed(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing: the docs' Node snippet cannot be run")
        pytest.skip("no node here")
    script = tmp_path / "mint.js"
    script.write_text(
        sample("token-snippet-node") + "console.log(bridgeToken(['sensor.solar_*'], { name: 'public-site' }));\n"
    )
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    # tests/run installs jsonwebtoken here (npm, cached outside the repo).
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sse_service" / "node" / "node_modules"
    env = {**os.environ, "TOKEN_SECRET": SECRET, "NODE_PATH": str(cache)}
    if subprocess.run([node, "-e", "require('jsonwebtoken')"], capture_output=True, timeout=30, env=env).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail(f"jsonwebtoken is not installed in {cache} (tests/run installs it with npm)")
        pytest.skip("jsonwebtoken is not installed for node here (the snippet's syntax was checked)")
    minted = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=30, env=env)
    claims = VERIFIER.verify(minted.stdout.strip())
    assert (claims.sub, claims.entities) == ("public-site", EntityPattern(["sensor.solar_*"]))
    assert claims.expires is not None and claims.expires > time.time() + 3000


def test_mint_makes_what_the_verifier_accepts() -> None:
    minted = mint(Secret(SECRET), entities=["sensor.*"], services=["switch.toggle"], sub="x", jti="j", expires=NOW + 5)
    claims = TokenVerifier(Secret(SECRET)).verify(minted, now=NOW)
    assert (claims.sub, claims.jti, claims.expires) == ("x", "j", NOW + 5)


# --- fuzz over HTTP ---------------------------------------------------------------------


def bridge_in_thread() -> contextlib.AbstractContextManager[LiveServer]:
    return live_server_in_thread(
        lambda ha: settings_for(
            ha, token_secret=Secret(SECRET), allowed_services=SWITCHES, command_rate=1e6, command_burst=1_000_000
        )
    )


@pytest.fixture(scope="module")
def threaded_bridge() -> Iterator[LiveServer]:
    with bridge_in_thread() as live:
        yield live


TOKENISH = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=120),
    st.builds(
        lambda i, c: (lambda t: t[:i] + c + t[i + 1 :])(token(**TABLET)), st.integers(0, 200), st.sampled_from("A_-.x=")
    ),
    st.builds(lambda h, p: f"{b64(h)}.{b64(p)}.{b64(b'x')}", st.binary(max_size=40), st.binary(max_size=40)),
    st.sampled_from([token(None, "none", **TABLET), token(SECRET * 2, "HS512", **TABLET), "." * 3, "a.b.", "eyJ.eyJ."]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TOKENISH)
def test_fuzzed_tokens_never_give_a_5xx(threaded_bridge: LiveServer, credential: str) -> None:
    try:
        VERIFIER.verify(credential)
        valid = True  # a change in a signature's unused last bits leaves it valid
    except TokenRefused:
        valid = False
    with httpx.Client(base_url=threaded_bridge.url, timeout=5) as client:
        read = client.get("/api/states", params={"token": credential})
        with client.stream("GET", "/events", params={"token": credential}) as stream:
            if stream.status_code != 200:
                stream.read()
        act = client.post(
            "/api/services/switch/turn_on",
            json={"entity_id": "switch.charger"},
            headers={"authorization": f"Bearer {credential}"},
        )
    for response in (read, stream, act):
        assert response.status_code == (200 if valid else 401), (response.status_code, credential)
        if not valid:
            assert response.json()["error"]["message"]
            assert SECRET not in response.text


# --- revocation, in a real process (SIGHUP, CONFIG_FILE) -----------------------------------


@contextlib.asynccontextmanager
async def service_with_config(config: Path, log: list[str], **env: str) -> AsyncIterator[tuple[str, int]]:
    """``python -m sse_service`` reading ``config``; yields its URL and pid; stderr goes to ``log``."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HA_", "TOKEN_", "CONFIG_FILE"))}
    environ.update(PORT=str(port), HOST="127.0.0.1", CONFIG_FILE=str(config), **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_service", env=environ, stderr=asyncio.subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(10):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url + "/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
        log.append(stderr.decode())


def write_config(path: Path, revoked: list[str]) -> None:
    path.write_text(f'token_secret = "{SECRET}"\ntoken_revoked = {json.dumps(revoked)}\nheartbeat = 0.3\n')


async def test_revoked_tokens_are_refused_and_their_open_streams_end_within_a_second(tmp_path: Path) -> None:
    config = tmp_path / "sse.toml"
    write_config(config, ["aaaa"])
    log: list[str] = []
    tablet = token(entities=["switch.*"], sub="wall-tablet", jti="tablet-1")
    guest = token(entities=["sensor.*"], sub="guest-anna", jti="g-1")
    other = token(entities=["sensor.*"], sub="family", jti="f-1")
    async with service_with_config(config, log, LOG_LEVEL="debug") as (url, pid):
        async with (
            open_stream(f"{url}/events?token={tablet}") as a,
            open_stream(f"{url}/events?token={guest}") as b,
            open_stream(f"{url}/events?token={other}") as c,
        ):
            for stream in (a, b, c):
                assert (await stream.next()).event == "snapshot"
            write_config(config, ["tablet-1", "guest-anna"])  # one jti, one sub
            saved = time.monotonic()
            for stream in (a, b):
                revoked = await stream.until(lambda e: e.event == "revoked", timeout=3)
                assert revoked.json()["code"] == "token_revoked"
                await stream.wait_ended(timeout=2)
            assert time.monotonic() - saved < 1.0, "ended within a second of the save"
            assert (await c.until(lambda e: e.event == "ping", timeout=3)).event == "ping", "the others go on"
            async with httpx.AsyncClient() as client:
                refused = await client.get(f"{url}/api/states?token={tablet}")
                assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token_revoked")
                assert (await client.get(f"{url}/api/states?token={other}")).status_code == 200

                # SIGHUP re-reads it too: a change the file watch cannot see (same size, old times).
                before = config.stat()
                write_config(config, ["tablet-1", "f-1" + " " * 7])  # guest-anna back, family out
                os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
                assert config.stat().st_size == before.st_size
                await asyncio.sleep(1.0)
                assert (await client.get(f"{url}/api/states?token={guest}")).status_code == 401, "no reload yet"
                os.kill(pid, signal.SIGHUP)
                async with asyncio.timeout(3):
                    while (await client.get(f"{url}/api/states?token={guest}")).status_code != 200:
                        await asyncio.sleep(0.05)
                assert (await c.until(lambda e: e.event == "revoked", timeout=3)).json()["code"] == "token_revoked"
    everything = "\n".join(log)
    assert "TOKEN_REVOKED reloaded: 2 value(s), 2 new; 2 open stream(s) ended" in everything
    assert "TOKEN_REVOKED reloaded: 2 value(s), 1 new; 1 open stream(s) ended" in everything
    assert "token revoked" in everything and "token wall-tablet" in everything
    assert "Traceback" not in everything
    for secret in (SECRET, tablet, guest, other):
        assert secret not in everything
