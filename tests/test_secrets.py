"""The HA token and the keys never reach a response or a log line, even at DEBUG and on errors."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import jwt

from sse_service.ha.demo import DemoHomeAssistant

from .helpers import SSEStream, service_process

GOOD_TOKEN = "good-token-5b2f6e1c9a7d4e3f8b0a"
WRONG_TOKEN = "wrong-token-0c8e7a6b5d4f3e2a1b9c"
READ_KEY = "read-key-71c3e9d0a4b85f26"
WRITE_KEY = "write-key-2a9f4c6e8b1d3570"
TOKEN_SECRET = "token-secret-6d0b3f9e1a7c5248e6b2"
OTHER_SECRET = "not-the-token-secret-4f1e8a2c9b7d3e60"
# Signed tokens (issue 16): they are credentials too, as is the secret that signs them.
TABLET = jwt.encode({"entities": ["switch.*"], "services": ["switch.turn_*"], "sub": "tablet"}, TOKEN_SECRET)
EXPIRED = jwt.encode({"entities": ["*"], "sub": "old", "exp": int(time.time()) - 60}, TOKEN_SECRET)
FORGED = jwt.encode({"entities": ["*"], "services": ["*"], "sub": "forged"}, OTHER_SECRET)
SECRETS = (GOOD_TOKEN, WRONG_TOKEN, READ_KEY, WRITE_KEY, TOKEN_SECRET, OTHER_SECRET, TABLET, EXPIRED, FORGED)


def service(ha: DemoHomeAssistant, token: str, log: list[str]) -> contextlib.AbstractAsyncContextManager[str]:
    return service_process(
        log,
        HA_URL=ha.url,
        HA_TOKEN=token,
        LOG_LEVEL="debug",
        HA_AUTH_RETRY="0.2",
        READ_KEY=READ_KEY,
        WRITE_KEY=WRITE_KEY,
        TOKEN_SECRET=TOKEN_SECRET,
        ALLOWED_SERVICES="switch.turn_on,switch.turn_off",
        COMMAND_RATE="6",
        COMMAND_BURST="3",
    )


async def session(url: str) -> list[str]:
    """Streams, reads, commands and errors, with right and wrong keys; returns every answer."""
    seen: list[str] = []
    read = {"Authorization": f"Bearer {READ_KEY}"}
    write = {"Authorization": f"Bearer {WRITE_KEY}"}
    wrong = {"Authorization": "Bearer x"}
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client:
        for method, path, headers, body in [
            ("GET", "/healthz", {}, None),
            ("GET", "/api/states", read, None),
            ("GET", f"/api/states?key={READ_KEY}", {}, None),
            ("GET", "/api/states", wrong, None),
            ("GET", "/api/states/switch.charger", {"cookie": f"sse_key={READ_KEY}"}, None),
            ("GET", "/api/states/switch.nothing", read, None),
            ("GET", "/nothing", read, None),
            ("POST", "/events", read, None),
            ("HEAD", "/events", read, None),
            ("DELETE", "/api/states", read, None),
            ("POST", "/api/services/switch/turn_on", wrong, b"{}"),
            ("POST", "/api/services/switch/turn_on", read, b'{"entity_id": "switch.charger"}'),
            ("POST", "/api/services/switch/turn_on", write, b'{"entity_id": "switch.charger"}'),
            ("POST", "/api/services/switch/turn_off", write, b'{"entity_id": 3}'),
            ("POST", "/api/services/switch/turn_off", write, b"{bad json"),
            ("POST", "/api/services/lock/unlock", write, b'{"entity_id": "lock.door"}'),
            ("POST", "/api/services/switch/turn_off", write, b'{"entity_id": "switch.charger"}'),
            ("GET", f"/api/states?token={TABLET}", {}, None),
            ("GET", f"/api/states?token={EXPIRED}", {}, None),
            ("GET", "/api/states/switch.charger", {"authorization": f"Bearer {FORGED}"}, None),
            ("GET", "/metrics", {"authorization": f"Bearer {TABLET}"}, None),
            (
                "POST",
                "/api/services/switch/turn_on",
                {"authorization": f"Bearer {TABLET}"},
                b'{"entity_id": "switch.charger"}',
            ),
            (
                "POST",
                "/api/services/switch/turn_on",
                {"authorization": f"Bearer {FORGED}"},
                b'{"entity_id": "switch.charger"}',
            ),
        ]:
            headers = {**headers, **json_type} if body is not None else headers
            response = await client.request(method, url + path, headers=headers, content=body)
            seen.append(f"{response.status_code} {response.headers} {response.text}")
        for query in (
            f"?key={READ_KEY}&last_event_id=bogus",
            "?key=wrong",
            f"?key={WRITE_KEY}&domain=switch",
            f"?token={TABLET}",
            f"?token={EXPIRED}",
            f"?key={FORGED}",
        ):
            async with client.stream("GET", url + "/events" + query) as response:
                seen.append(f"{response.status_code} {response.headers}")
                if response.status_code != 200:
                    seen.append((await response.aread()).decode())
                    continue
                stream = SSEStream(response)
                with contextlib.suppress(TimeoutError):
                    first = await stream.next(timeout=3)
                    seen.append(first.data)
                await stream.close()
    return seen


async def test_the_token_appears_in_no_response_and_no_log_line(ha: DemoHomeAssistant) -> None:
    ha.token = GOOD_TOKEN
    logs: list[str] = []
    answers: list[str] = []
    async with service(ha, GOOD_TOKEN, logs) as url:
        answers += await session(url)
        ha.set_state("switch.charger", "on")
        await ha.stop()  # errors on the upstream side get logged too
        await asyncio.sleep(0.3)
        await ha.start()
        await asyncio.sleep(0.5)
        answers += await session(url)
    async with service(ha, WRONG_TOKEN, logs) as url:
        await asyncio.sleep(0.6)  # a few auth_invalid rounds
        answers += await session(url)
        assert any("auth_invalid" in a for a in answers)

    everything = "\n".join(answers + logs)
    assert "Upstream authenticated" in logs[0], "the log is captured (the test would be blind otherwise)"
    assert "refused the token" in logs[1]
    assert "Command switch.turn_on on switch.charger" in logs[0], "commands are logged"
    assert "token tablet (filter switch.*" in logs[0], "token streams are logged, by their sub"
    assert any(a.startswith("200 ") and '"ok":true' in a for a in answers), "the session ran commands"
    for secret in SECRETS:
        assert secret not in everything
        assert secret[-12:] not in everything


async def test_the_demo_upstreams_own_token_is_not_logged_at_debug() -> None:
    # The demo's websockets server logged every frame at DEBUG, the auth message with the
    # token in it (issue 23): the redaction knows the settings' secrets, not this one.
    log: list[str] = []
    async with service_process(log, ready="/readyz", LOG_LEVEL="debug"):
        pass
    text = log[0]
    assert "No HA_URL set: running the embedded demo" in text and "Upstream authenticated" in text
    assert '"access_token"' not in text and "auth_ok" not in text
