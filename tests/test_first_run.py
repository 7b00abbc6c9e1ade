"""What a new user reads first: where to point a browser."""

from __future__ import annotations

from sse_service.config import Secret, Settings
from sse_service.server import where_to_look


def test_the_start_line_gives_the_url_and_says_it_is_the_demo() -> None:
    line = where_to_look(Settings(), 8000)
    assert "http://127.0.0.1:8000/" in line and "demo" in line


def test_on_all_interfaces_it_says_to_use_the_machines_address() -> None:
    line = where_to_look(Settings(host="0.0.0.0"), 8123)
    assert "<this machine's address>:8123" in line


def test_against_home_assistant_it_does_not_say_demo_and_shows_no_secret() -> None:
    settings = Settings(ha_url="ws://ha.local:8123/api/websocket", ha_token=Secret("tok-123456789"), host="::1")
    line = where_to_look(settings, 9000)
    assert "http://[::1]:9000/" in line and "demo" not in line and "tok-" not in line
