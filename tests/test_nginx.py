"""A real nginx in front, with the config in docs/deploying.md: events arrive unbuffered, limits see real clients.

The docs have two server blocks, plain HTTP and then TLS with HTTP/2; both run here, the second with
a self-signed certificate made by openssl (tests/test_tabs.py puts eight browser tabs through it).
Skips without nginx or openssl, except under ``CI=true`` where it fails (tests/run installs nginx as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sse_service.ha.demo import DemoHomeAssistant

from .helpers import LiveServer, SSEStream, free_port, live_server, settings_for
from .samples import sample

# What the docs' TLS block names, replaced here by a port and a certificate of the test's own.
DOCS_TLS_LISTEN = "listen 443 ssl http2;"
DOCS_CERTIFICATE = "/etc/ssl/dash.example.com/fullchain.pem"
DOCS_CERTIFICATE_KEY = "/etc/ssl/dash.example.com/privkey.pem"


def docs_nginx_configs() -> tuple[str, str]:
    """The docs' nginx server blocks: the upstream with the plain server, then the TLS + HTTP/2 server."""
    plain, tls = sample("nginx-plain"), sample("nginx-tls")
    assert "upstream sse_service" in plain and "listen 80;" in plain
    assert DOCS_TLS_LISTEN in tls and DOCS_CERTIFICATE in tls and DOCS_CERTIFICATE_KEY in tls
    return plain, tls


def _required(tool: str, found: str | None) -> str:
    if found is None:
        reason = f"{tool} is not installed (tests/run installs it as root: apt-get install {tool})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    return _required("nginx", found)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl: (certificate, key)."""
    openssl = _required("openssl", shutil.which("openssl"))
    certificate, key = directory / "cert.pem", directory / "key.pem"
    request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1"
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    command = [openssl, *request.split(), "-addext", names, "-keyout", str(key), "-out", str(certificate)]
    subprocess.run(command, check=True, capture_output=True)
    return certificate, key


@contextlib.contextmanager
def nginx(tmp_path: Path, service_port: int, *, tls: bool = False) -> Iterator[int]:
    """The docs' config in front of ``service_port``; yields nginx's port (the TLS server's with ``tls``)."""
    binary = nginx_binary()
    port = free_port()
    plain, secure = docs_nginx_configs()
    site = plain.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{service_port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{port}" in site and f"127.0.0.1:{service_port}" in site
    temp = tmp_path / "nginx"
    temp.mkdir()
    if tls:
        certificate, key = self_signed_certificate(temp)
        port = free_port()
        secure = secure.replace(DOCS_TLS_LISTEN, f"listen 127.0.0.1:{port} ssl http2;")
        secure = secure.replace(DOCS_CERTIFICATE, str(certificate)).replace(DOCS_CERTIFICATE_KEY, str(key))
        site += "\n" + secure
    (temp / "site.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (temp / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {temp}/site.conf;
}}
"""
    )
    errors = temp / "stderr.log"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen([binary, "-p", str(temp), "-c", str(temp / "nginx.conf")], stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:  # a TCP connect only: an HTTP request would wait on the service, on this same loop
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {errors.read_text()}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def behind_nginx(ha: DemoHomeAssistant, tmp_path: Path) -> AsyncIterator[tuple[LiveServer, str]]:
    async with live_server(settings_for(ha, max_streams_per_ip=1, heartbeat=30.0)) as live:
        with nginx(tmp_path, live.port) as port:
            yield live, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def stream_from(address: str, url: str) -> AsyncIterator[SSEStream]:
    """A stream opened from a given loopback address, as another machine would."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with (
        httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, read=None)) as client,
        client.stream("GET", url + "/events", headers={"accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        stream = SSEStream(response)
        try:
            yield stream
        finally:
            await stream.close()


async def test_events_pass_through_nginx_without_buffering(
    behind_nginx: tuple[LiveServer, str], ha: DemoHomeAssistant
) -> None:
    _, url = behind_nginx
    async with stream_from("127.0.0.2", url) as stream:
        assert (await stream.next()).event == "snapshot"
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert "no-transform" in headers["cache-control"]
        assert "content-encoding" not in headers, "nothing compresses (and so buffers) the stream"
        for value in range(5):
            # A few hundred bytes per event: a buffering proxy would hold them for its 4-8 KiB buffer.
            started = time.monotonic()
            ha.set_state("sensor.house_load", str(value))
            event = await stream.until_state("sensor.house_load", str(value), timeout=2)
            assert event.id
            assert time.monotonic() - started < 0.5


async def test_the_real_client_address_reaches_the_limits(
    behind_nginx: tuple[LiveServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = behind_nginx
    caplog.set_level(logging.INFO, logger="sse_service.stream")
    async with stream_from("127.0.0.2", url) as first:
        assert (await first.next()).event == "snapshot"
        # Same client again: over its limit of one stream (nginx itself is one address for us).
        async with stream_from("127.0.0.2", url) as again:
            busy = await again.next()
            assert busy.event == "busy" and busy.json()["code"] == "too_many_streams"
        # Another client through the same nginx has its own allowance.
        async with stream_from("127.0.0.3", url) as other:
            assert (await other.next()).event == "snapshot"
    await asyncio.sleep(0.1)
    opened = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stream opened for")]
    assert any(m.startswith("Stream opened for 127.0.0.2 ") for m in opened), opened
    assert any(m.startswith("Stream opened for 127.0.0.3 ") for m in opened), opened


async def test_the_tls_block_speaks_http2_and_passes_events_unbuffered(ha: DemoHomeAssistant, tmp_path: Path) -> None:
    async with live_server(settings_for(ha, heartbeat=30.0)) as live:
        with nginx(tmp_path, live.port, tls=True) as port:
            certificate = tmp_path / "nginx" / "cert.pem"
            offer = ssl.create_default_context(cafile=certificate)
            offer.set_alpn_protocols(["h2", "http/1.1"])  # what a browser offers
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                offer.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                assert tls.selected_alpn_protocol() == "h2", "nginx takes HTTP/2"
            trust = ssl.create_default_context(cafile=certificate)  # httpx itself speaks HTTP/1.1
            async with (
                httpx.AsyncClient(verify=trust, timeout=httpx.Timeout(5, read=None)) as client,
                client.stream("GET", f"https://127.0.0.1:{port}/events") as response,
            ):
                assert response.status_code == 200
                stream = SSEStream(response)
                try:
                    assert (await stream.next()).event == "snapshot"
                    started = time.monotonic()
                    ha.set_state("sensor.house_load", "777")
                    await stream.until_state("sensor.house_load", "777", timeout=2)
                    assert time.monotonic() - started < 0.5
                finally:
                    await stream.close()
