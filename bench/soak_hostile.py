"""The hostile mix of the soak test (bench/soak.py): odd requests, and what each must get.

Long because it is a table: each probe with the answer it must get.

Every probe is raw bytes (see ``soak_clients.http_exchange``). Each must get an answer that
is not a 5xx other than the documented 503, and a stream must reach its first event. Probes
with ``expect`` also pin the documented answer (README's error table): those are the
contract checks, e.g. a number outside the signed 64-bit range in a command body is a 422
and never reaches Home Assistant, a GET on the command route is a 405.

Log-forgery probes put ``FORGED`` after a CR, LF or NUL in text the bridge may log; the
soak then looks for a bridge log line that starts with it (or holds a control character).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

FORGED = "SOAK-FORGED"
ENTITY = "sensor.bench_0"
SERVICE = "input_number/set_value"  # allowed by the soak's ALLOWED_SERVICES
DENIED = "homeassistant/restart"  # not allowed


@dataclass(frozen=True)
class Ctx:
    port: int
    epoch: str
    read_key: str
    write_key: str


@dataclass(frozen=True)
class Probe:
    name: str
    raw: bytes
    stream: bool = False  # a GET /events that must become a stream with a first event
    expect: frozenset[int] | None = None  # the documented status (a contract probe)
    expect_header: tuple[str, str] | None = None  # (name, text the value must contain)
    echoes: bool = False  # carries a secret that the answer may echo back to its own sender
    drip: tuple[bytes, ...] = ()
    drip_pause: float = 0.0


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def request(
    method: str | bytes,
    target: str | bytes,
    ctx: Ctx,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes | None = None,
    *,
    version: str = "HTTP/1.1",
    host: bool = True,
    close: bool = True,
    length: bool = True,
) -> bytes:
    lines = [_b(method) + b" " + _b(target) + b" " + _b(version)]
    if host:
        lines.append(f"Host: 127.0.0.1:{ctx.port}".encode())
    lines += [_b(k) + b": " + _b(v) for k, v in headers]
    if close:
        lines.append(b"Connection: close")
    if body is not None and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _json(key: str) -> list[tuple[str | bytes, str | bytes]]:
    return [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")]


def command(ctx: Ctx, body: bytes | str, *, service: str = SERVICE, key: str | None = None) -> bytes:
    return request("POST", f"/api/services/{service}", ctx, _json(key or ctx.write_key), _b(body))


def stream(ctx: Ctx, query: str = "", headers: Iterable[tuple[str | bytes, str | bytes]] = ()) -> bytes:
    target = "/events" + (f"?{query}" if query else "")
    return request(
        "GET",
        target,
        ctx,
        [("Accept", "text/event-stream"), ("Authorization", f"Bearer {ctx.read_key}")] + list(headers),
        close=False,
    )


def _auth(ctx: Ctx) -> list[tuple[str | bytes, str | bytes]]:
    return [("Authorization", f"Bearer {ctx.read_key}")]


def _value(number: str) -> str:
    return f'{{"entity_id":"{ENTITY}","value":{number}}}'


S422 = frozenset({422})
S401 = frozenset({401})
S403 = frozenset({403})
S405 = frozenset({405})
# In range: forwarded; a 503 when an earlier probe (or a defect) took the upstream down.
SENT = frozenset({200, 503})


def contract_probes(ctx: Ctx) -> list[Probe]:
    """Probes with a documented answer (the README's error table and issue 13)."""
    out: list[Probe] = []
    big = {
        "400-digit integer": "9" * 400,
        "negative 400-digit integer": "-" + "7" * 400,
        "4301-digit integer": "1" * 4301,
        "5000-digit integer": "3" * 5000,
        "2**63": str(2**63),
        "2**64": str(2**64),
        "-2**63-1": str(-(2**63) - 1),
        "1e309": "1e309",
        "-1e309": "-1e309",
        "1E400": "1E400",
        "NaN": "NaN",
        "Infinity": "Infinity",
        "-Infinity": "-Infinity",
    }
    for name, number in big.items():
        out.append(Probe(f"command value {name}", command(ctx, _value(number)), expect=S422))
    nested_big = f'{{"entity_id":"{ENTITY}","data":{{"a":[1,{{"b":[{"8" * 400}]}}]}}}}'
    out.append(Probe("command 400-digit integer nested in data", command(ctx, nested_big), expect=S422))
    out.append(
        Probe("command 2**64 in a list", command(ctx, f'{{"entity_id":"{ENTITY}","v":[1,2,{2**64}]}}'), expect=S422)
    )
    for name, number in {
        "2**63-1": str(2**63 - 1),
        "-2**63": str(-(2**63)),
        "1e308": "1e308",
        "1e-400": "1e-400",
        "-0": "-0",
        "long decimal": "123456789012345678.987654321",
    }.items():
        out.append(Probe(f"command value {name} (in range)", command(ctx, _value(number)), expect=SENT))
    deep33 = f'{{"entity_id":"{ENTITY}","d":' + "[" * 33 + "]" * 33 + "}"
    deep4000 = f'{{"entity_id":"{ENTITY}","d":' + "[" * 4000 + "]" * 4000 + "}"
    out.append(Probe("command nested 33 deep", command(ctx, deep33), expect=S422))
    out.append(Probe("command nested 4000 deep", command(ctx, deep4000), expect=S422))
    malformed = {
        "truncated": '{"entity_id":',
        "single quotes": "{'entity_id': 'sensor.bench_0'}",
        "trailing garbage": _value("1") + "xyz",
        "two objects": _value("1") + _value("2"),
        "array": f'["{ENTITY}"]',
        "string": '"sensor.bench_0"',
        "null": "null",
        "empty": "",
        "spaces": "   \n\t ",
        "unpaired surrogate": f'{{"entity_id":"{ENTITY}","v":"\\ud800"}}',
        "unpaired low surrogate key": f'{{"entity_id":"{ENTITY}","\\udfff":1}}',
        "entity_id number": '{"entity_id":12}',
        "entity_id list of numbers": '{"entity_id":[1,2]}',
        "entity_id empty": '{"entity_id":""}',
        "entity_id empty list": '{"entity_id":[]}',
        "entity_id missing": '{"value":1}',
        "area_id": f'{{"entity_id":"{ENTITY}","area_id":"kitchen"}}',
        "target": f'{{"entity_id":"{ENTITY}","target":{{"area_id":"x"}}}}',
        "device_id": '{"device_id":"abc"}',
    }
    for name, body in malformed.items():
        out.append(Probe(f"command body {name}", command(ctx, body), expect=S422))
    raw_bodies = {
        "invalid UTF-8": b'{"entity_id":"\xff\xfe"}',
        "NUL": b'{"entity_id":"sensor.bench_0"}\x00',
        "BOM": b"\xef\xbb\xbf" + _value("1").encode(),
    }
    for name, data in raw_bodies.items():
        expect = frozenset({422, 200, 503}) if name == "BOM" else S422
        out.append(Probe(f"command body {name}", command(ctx, data), expect=expect))
    # Who may act is decided before the body is read: keys, then the allowlist, then the body.
    out.append(Probe("denied service, body {}", command(ctx, "{}", service=DENIED), expect=S403))
    out.append(Probe("denied service, malformed body", command(ctx, "{nope", service=DENIED), expect=S403))
    out.append(Probe("denied service, 400-digit integer", command(ctx, _value("9" * 400), service=DENIED), expect=S403))
    out.append(Probe("denied service, valid body", command(ctx, _value("1"), service=DENIED), expect=S403))
    no_key = [("Content-Type", "application/json")]
    out.append(
        Probe(
            "command without key, bad body",
            request("POST", f"/api/services/{DENIED}", ctx, no_key, b"{nope"),
            expect=S401,
        )
    )
    out.append(Probe("command with the read key", command(ctx, _value("1"), key=ctx.read_key), expect=S401))
    out.append(Probe("command with a wrong key", command(ctx, _value("1"), key="x" * 24), expect=S401))
    out.append(
        Probe(
            "command key in a cookie only",
            request(
                "POST",
                f"/api/services/{SERVICE}",
                ctx,
                [("Cookie", f"sse_key={ctx.write_key}"), ("Content-Type", "application/json")],
                _value("1").encode(),
            ),
            expect=S401,
        )
    )
    out.append(
        Probe(
            "command key in the query only",
            request(
                "POST",
                f"/api/services/{SERVICE}?key={ctx.write_key}",
                ctx,
                [("Content-Type", "application/json")],
                _value("1").encode(),
            ),
            expect=S401,
        )
    )
    # Anything but POST on the command route: 405 with Allow: POST.
    for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
        out.append(
            Probe(
                f"{method} on the command route",
                request(method, f"/api/services/{SERVICE}", ctx, _json(ctx.write_key)),
                expect=S405,
                expect_header=("allow", "POST"),
            )
        )
    out.append(
        Probe(
            "command text/plain",
            request(
                "POST",
                f"/api/services/{SERVICE}",
                ctx,
                [("Authorization", f"Bearer {ctx.write_key}"), ("Content-Type", "text/plain")],
                _value("1").encode(),
            ),
            expect=frozenset({415}),
        )
    )
    out.append(
        Probe(
            "command no content type",
            request(
                "POST",
                f"/api/services/{SERVICE}",
                ctx,
                [("Authorization", f"Bearer {ctx.write_key}")],
                _value("1").encode(),
            ),
            expect=frozenset({415}),
        )
    )
    padding = " " * 9000
    out.append(Probe("command body over 8 KiB", command(ctx, _value("1") + padding), expect=frozenset({413})))
    out.append(
        Probe(
            "command declares 100000 bytes",
            request(
                "POST",
                f"/api/services/{SERVICE}",
                ctx,
                _json(ctx.write_key) + [("Content-Length", "100000")],
                b"{}",
                length=False,
            ),
            expect=frozenset({413}),
        )
    )
    out.append(Probe("command entity not exposed", command(ctx, '{"entity_id":"light.kitchen"}'), expect=S403))
    out.append(
        Probe("command unknown entity", command(ctx, '{"entity_id":"sensor.bench_999"}'), expect=frozenset({404, 503}))
    )
    out.append(Probe("command valid", command(ctx, _value("42")), expect=SENT))
    out.append(
        Probe(
            "command entity list of 300",
            command(ctx, '{"entity_id":[' + ",".join([f'"{ENTITY}"'] * 300) + "]}"),
            expect=SENT,
        )
    )
    out.append(
        Probe(
            "command chunked body",
            request(
                "POST",
                f"/api/services/{SERVICE}",
                ctx,
                _json(ctx.write_key) + [("Transfer-Encoding", "chunked")],
                b"5\r\n"
                + _value("7").encode()[:5]
                + b"\r\n"
                + f"{len(_value('7')) - 5:x}".encode()
                + b"\r\n"
                + _value("7").encode()[5:]
                + b"\r\n0\r\n\r\n",
                length=False,
            ),
            expect=SENT,
        )
    )
    # Readers: a missing or wrong key is a 401, never a stream.
    out.append(
        Probe("stream without key", request("GET", "/events", ctx, [("Accept", "text/event-stream")]), expect=S401)
    )
    out.append(Probe("stream wrong key", request("GET", "/events?key=" + "y" * 30, ctx), expect=S401))
    out.append(Probe("stream key with unicode", request("GET", "/events?key=" + quote("ключ①" * 5), ctx), expect=S401))
    out.append(
        Probe(
            "stream POST",
            request("POST", "/events", ctx, [("Authorization", f"Bearer {ctx.read_key}")], b""),
            expect=S405,
        )
    )
    out.append(Probe("states without key", request("GET", "/api/states", ctx), expect=S401))
    # Filters past MAX_FILTER_PATTERNS / MAX_FILTER_LENGTH: compiled, they held the loop.
    too_large = {
        "5000-char filter": "entity_id=" + "a" * 5000,
        "1000 globs": "entity_id=" + ",".join(f"sensor.x{i}" for i in range(1000)),
        "60 KB filter": "entity_id=" + ",".join(f"sensor.{i:06d}_power" for i in range(3000)),
        "101 domains": "domain=" + ",".join(["sensor"] * 101),
    }
    for name, query in too_large.items():
        out.append(Probe(f"stream filter {name}", stream(ctx, query), expect=S422))
        out.append(Probe(f"states filter {name}", request("GET", f"/api/states?{query}", ctx, _auth(ctx)), expect=S422))
    # Before any key is checked: SimpleCookie took 10-25 s over this (CVE-2024-7592), the
    # event loop standing still, /healthz and every stream with it.
    bomb: list[tuple[str | bytes, str | bytes]] = [("Cookie", 'sse_key="' + "\\" * 80_000 + '"')]
    out.append(Probe("cookie bomb on /api/states", request("GET", "/api/states", ctx, bomb), expect=S401))
    out.append(Probe("cookie bomb on /events", request("GET", "/events", ctx, bomb), expect=S401))
    out.append(
        Probe("cookie bomb with a key", request("GET", "/api/states", ctx, _auth(ctx) + bomb), expect=frozenset({200}))
    )
    # Times no datetime holds: a 500 that left a request pending on the upstream.
    for query in ("until=999999999999", "since=999999999999", "since=0001-01-01T00:00:00%2B14:00"):
        path = f"/api/history/{ENTITY}?{query}"
        out.append(Probe(f"history {query}", request("GET", path, ctx, _auth(ctx)), expect=S422))
    out.append(Probe("metrics without key", request("GET", "/metrics", ctx), expect=S401))
    out.append(Probe("healthz", request("GET", "/healthz", ctx), expect=frozenset({200})))
    return out


def stream_probes(ctx: Ctx) -> list[Probe]:
    """Streams that must start (200) and reach their first event, whatever the id or the filter."""
    e = ctx.epoch
    ids: dict[str, bytes] = {
        "superscript two": f"{e}-".encode() + "²".encode("latin-1"),  # latin-1 on the wire: '²' for the server
        "superscript two alone": "²".encode("latin-1"),
        "UTF-8 superscript": f"{e}-²".encode(),
        "400 digits": f"{e}-{'9' * 400}".encode(),
        "5000 digits": ("9" * 5000).encode(),
        "17 digits": f"{e}-99999999999999999".encode(),
        "19 digits": f"{e}-9999999999999999999".encode(),
        "negative": f"{e}--5".encode(),
        "zero": f"{e}-0".encode(),
        "empty seq": f"{e}-".encode(),
        "dash": b"-",
        "space": b" ",
        "exponent": f"{e}-1e3".encode(),
        "hex": f"{e}-0x10".encode(),
        "inner space": f"{e}- 5".encode(),
        "plus": f"{e}-+5".encode(),
        "underscore": f"{e}-1_0".encode(),
        "foreign epoch": b"zzzzzzzz-5",
        "no dash": b"12345",
        "latin-1 bytes": b"\xe9\xff\xfe",
        "64 KiB": b"7" * 60000,
        "tab": f"{e}-\t5".encode(),
    }
    out = [
        Probe(f"Last-Event-ID {name}", stream(ctx, headers=[("Last-Event-ID", v)]), stream=True)
        for name, v in ids.items()
    ]
    query_ids = {
        "superscript two": f"{e}-²",
        "circled one": f"{e}-①",
        "arabic-indic three": f"{e}-٣",
        "fullwidth twelve": f"{e}-１２",
        "devanagari five": f"{e}-५",
        "circled alone": "①",
        "400 digits": f"{e}-{'9' * 400}",
        "NUL": f"{e}-\x005",
        "newline": f"{e}-5\n6",
        "empty": "",
    }
    for name, value in query_ids.items():
        out.append(Probe(f"?last_event_id= {name}", stream(ctx, "last_event_id=" + quote(value)), stream=True))
    filters = {
        "LF in entity_id": f"entity_id=x%0A{FORGED}%20entity_id",
        "CRLF in entity_id": f"entity_id=sensor.bench_1%0D%0A{FORGED}%20crlf",
        "CR in entity_id": f"entity_id=x%0D{FORGED}%20cr",
        "NUL in entity_id": f"entity_id=x%00{FORGED}%20nul",
        "LF in domain": f"domain=sensor%0A{FORGED}%20domain",
        "NUL in domain": f"domain=x%00{FORGED}",
        "ESC in entity_id": f"entity_id=x%1B[31m{FORGED}",
        "U+2028 in entity_id": f"entity_id=x%E2%80%A8{FORGED}",
        "star bomb": "entity_id=" + "*" * 2000 + "a",
        "brackets": "entity_id=" + quote("[!][[]]\\") + "&domain=" + quote("[a-"),
        "unicode": "entity_id=" + quote("sensor.℃①²,𝔰𝔢𝔫𝔰𝔬𝔯.*"),
        "empty values": "entity_id=&domain=&entity_id=",
        "repeated key": "&".join(["entity_id=sensor.bench_1"] * 300),
        "bad percent": "entity_id=%ZZ%&domain=%",
        "matches nothing": "entity_id=light.none",
    }
    for name, query in filters.items():
        out.append(Probe(f"stream filter {name}", stream(ctx, query), stream=True))
    keys = {
        "key in query": request("GET", f"/events?key={quote(ctx.read_key)}", ctx, close=False),
        "key in cookie": request(
            "GET", "/events", ctx, [("Cookie", f'a=1; sse_key={ctx.read_key}; b="x')], close=False
        ),
        "quoted cookie": request("GET", "/events", ctx, [("Cookie", f'sse_key="{ctx.read_key}"')], close=False),
        "write key reads": request("GET", "/events", ctx, [("Authorization", f"Bearer {ctx.write_key}")], close=False),
        "no Accept": request("GET", "/events", ctx, [("Authorization", f"Bearer {ctx.read_key}")], close=False),
        "odd Accept": stream(ctx, headers=[("Accept", "*/*;q=9;" + "a" * 3000)]),
        "HTTP/1.0": request(
            "GET", "/events", ctx, [("Authorization", f"Bearer {ctx.read_key}")], version="HTTP/1.0", close=False
        ),
        "X-Forwarded-For junk": stream(ctx, headers=[("X-Forwarded-For", f"{FORGED}, 999.1.1.1, ::zz, ,")]),
        "Forwarded junk": stream(ctx, headers=[("Forwarded", f'for="[::1]:80";by={FORGED};proto=gopher, for=;')]),
        "Origin": stream(ctx, headers=[("Origin", "https://evil.example")]),
    }
    for name, raw in keys.items():
        out.append(Probe(f"stream {name}", raw, stream=True))
    return out


def odd_probes(ctx: Ctx) -> list[Probe]:
    """Paths, methods, headers, framing: any answer but a 5xx (or no answer, for broken framing)."""
    out: list[Probe] = []
    auth = [("Authorization", f"Bearer {ctx.read_key}")]
    paths = [
        "/",
        "/index.html",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/states",
        f"/api/states/{ENTITY}",
        "/api/states/",
        "/api/states/" + "a" * 8000,
        "/api/states/%ZZ",
        "/api/states/sensor.bench_0%00",
        "/api/states/%0A" + FORGED,
        "/api/services",
        "/api/services/a",
        "/api/services/a/b/c",
        "/api/services//",
        "/api/services/%0a/%0d",
        "/%00",
        "/%0A" + FORGED,
        "/..%2f..%2fetc/passwd",
        "/../../etc/passwd",
        "//events",
        "/events/",
        "/events%20",
        "/EVENTS",
        "/events;a=b",
        "/events/../healthz",
        "/static/../../x",
        "/favicon.ico",
        "/?" + "a=1&" * 2000,
        "/healthz?%",
        "/healthz?x=%E2%91%A0",
        "/%E2%91%A0",
        "/" + "é" * 10,
    ]
    for path in paths:
        out.append(Probe(f"GET {path[:40]}", request("GET", path, ctx, auth)))
    out.append(Probe("absolute-form", request("GET", f"http://127.0.0.1:{ctx.port}/healthz", ctx)))
    out.append(Probe("OPTIONS *", request("OPTIONS", "*", ctx)))
    out.append(Probe("raw non-ASCII path", request("GET", b"/\xff\xfe\x00", ctx)))
    out.append(Probe("path with secret (404 echoes it)", request("GET", f"/soak/{ctx.write_key}", ctx), echoes=True))
    out.append(Probe("state of secret entity", request("GET", f"/api/states/{ctx.read_key}", ctx, auth), echoes=True))
    out.append(Probe("metrics key in query", request("GET", f"/metrics?key={quote(ctx.read_key)}", ctx)))
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get", "CONNECT", "M-SEARCH"):
        for path in ("/events", "/api/states", "/healthz", "/metrics", "/"):
            out.append(Probe(f"{method} {path}", request(method, path, ctx, auth, b"")))
    out.append(
        Probe(
            "preflight",
            request(
                "OPTIONS",
                f"/api/services/{SERVICE}",
                ctx,
                [
                    ("Origin", "https://x.example"),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "authorization, content-type"),
                ],
            ),
        )
    )
    headers: dict[str, list[tuple[str | bytes, str | bytes]]] = {
        "huge header": [("X-Big", "b" * 60000)],
        "200 headers": [(f"X-H{i}", "v") for i in range(200)],
        "NUL in header": [("X-Nul", b"a\x00b")],
        "no colon": [("X-NoColon", "")],
        "obs-fold": [("X-Fold", b"a\r\n folded")],
        "space before colon": [(b"X-Space ", "v")],
        "two Content-Length": [("Content-Length", "0"), ("Content-Length", "5")],
        "negative Content-Length": [("Content-Length", "-1")],
        "huge Content-Length": [("Content-Length", "9" * 30)],
        "Content-Length 1e3": [("Content-Length", "1e3")],
        "CL and TE": [("Content-Length", "4"), ("Transfer-Encoding", "chunked")],
        "TE gzip, chunked": [("Transfer-Encoding", "gzip, chunked")],
        "Upgrade websocket": [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "Upgrade h2c": [("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")],
        "Expect 100-continue": [("Expect", "100-continue")],
        "Authorization 10k": [("Authorization", "Bearer " + "k" * 10000)],
        "Authorization Basic": [("Authorization", "Basic " + "Og==")],
        "Authorization unicode": [("Authorization", "Bearer ключ①²".encode())],
        "Authorization twice": [("Authorization", "Bearer x"), ("Authorization", f"Bearer {ctx.read_key}")],
        "Cookie garbage": [("Cookie", ';;;=;sse_key;sse_key="\\";=' + "c" * 4000)],
        "Host junk": [("Host", "\x01evil\x7f:99999")],
        "X-Forwarded-For 500": [("X-Forwarded-For", ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(500)))],
        "Forwarded junk": [("Forwarded", 'for=";;;"""; by=[::1')],
        "Last-Event-ID on REST": [("Last-Event-ID", "²")],
        "control characters": [("Accept", "*/*;q=\x01"), ("X-Forwarded-For", "\x0b1.2.3.4"), ("Forwarded", "for=\x7f")],
    }
    for name, extra in headers.items():
        for path in ("/healthz", "/api/states", f"/api/services/{SERVICE}"):
            method = "POST" if path.startswith("/api/services") else "GET"
            out.append(Probe(f"{name} on {path}", request(method, path, ctx, auth + extra, host=name != "Host junk")))
    framing = {
        "bare LF": f"GET /healthz HTTP/1.1\nHost: 127.0.0.1:{ctx.port}\nConnection: close\n\n".encode(),
        "HTTP/0.9": b"GET /\r\n\r\n",
        "HTTP/2.0 line": request("GET", "/healthz", ctx, version="HTTP/2.0"),
        "HTTP/1.2": request("GET", "/healthz", ctx, version="HTTP/1.2"),
        "no version": b"GET /healthz\r\n\r\n",
        "garbage": bytes(range(256)) * 4,
        "TLS hello": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 160,
        "empty lines": b"\r\n" * 2000 + request("GET", "/healthz", ctx),
        "pipelined": request("GET", "/healthz", ctx, close=False) + request("GET", "/readyz", ctx),
        "bad chunk size": request(
            "POST",
            f"/api/services/{SERVICE}",
            ctx,
            _json(ctx.write_key) + [("Transfer-Encoding", "chunked")],
            b"zz\r\nab\r\n0\r\n\r\n",
            length=False,
        ),
        "chunk size overflow": request(
            "POST",
            f"/api/services/{SERVICE}",
            ctx,
            _json(ctx.write_key) + [("Transfer-Encoding", "chunked")],
            b"ffffffffffffffffffff\r\nab\r\n",
            length=False,
        ),
        "request line 70 KiB": b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        "method 5 KiB": b"A" * 5000 + b" / HTTP/1.1\r\n\r\n",
    }
    for name, raw in framing.items():
        out.append(Probe(f"framing {name}", raw))
    return out


# Half-open connections (soak.py opens a burst of them): a request line and headers that
# never end, or nothing at all. The bridge must close each within REQUEST_TIMEOUT.
HALF_OPEN_HEADS = (
    b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nX-Half: ",
    b"POST /api/services/input_number/set_value HTTP/1.1\r\nContent-Le",
    b"G",
    b"",
)


def slow_probes(ctx: Ctx, seconds: float) -> list[Probe]:
    """Slowloris-style: a request that trickles in a byte at a time and never ends (bounded by ``seconds``)."""
    pause = 0.5
    pieces = tuple(b"a" for _ in range(max(1, int(seconds / pause))))
    heads = [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nX-Slow: ",
        request(
            "POST",
            f"/api/services/{SERVICE}",
            ctx,
            _json(ctx.write_key) + [("Content-Length", "4000")],
            b'{"entity_id":"sensor.bench_0","v":"',
            length=False,
        ),
        b"G",
    ]
    return [Probe(f"slow {i}", heads[i % len(heads)], drip=pieces, drip_pause=pause) for i in range(len(heads))]


def build_mix(ctx: Ctx, reps: int, rng: random.Random) -> list[Probe]:
    """Every probe ``reps`` times, in a random order."""
    every = contract_probes(ctx) + stream_probes(ctx) + odd_probes(ctx)
    mix = every * reps
    rng.shuffle(mix)
    return mix
