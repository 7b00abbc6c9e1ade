"""``python -m sse_service`` / ``sse-service``: read the settings, then serve."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .app import create_app
from .config import ConfigError, load_settings
from .logs import setup_logging
from .server import serve

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sse-service",
        description="Fan one Home Assistant WebSocket out to many browsers as Server-Sent Events. "
        "Settings come from environment variables (see README); flags override them.",
    )
    parser.add_argument("--host", help="address to bind (HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to bind (PORT, default 8000)")
    parser.add_argument("--graceful-timeout", help="seconds to drain on SIGTERM (GRACEFUL_TIMEOUT, default 10)")
    parser.add_argument("--forwarded-allow-ips", help="trusted proxies (FORWARDED_ALLOW_IPS, default 127.0.0.1,::1)")
    parser.add_argument("--max-stream-age", help="seconds before a stream is ended for rotation (MAX_STREAM_AGE)")
    parser.add_argument("--check", action="store_true", help="validate the settings and exit")
    args = parser.parse_args(argv)

    environ = dict(os.environ)
    flags = (
        ("HOST", args.host),
        ("PORT", args.port),
        ("GRACEFUL_TIMEOUT", args.graceful_timeout),
        ("FORWARDED_ALLOW_IPS", args.forwarded_allow_ips),
        ("MAX_STREAM_AGE", args.max_stream_age),
    )
    for name, value in flags:
        if value is not None:
            environ[name] = value
    try:
        settings = load_settings(environ)
    except ConfigError as e:
        print(f"sse-service: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print("sse-service: configuration OK")
        return 0
    setup_logging(settings.log_level, settings.secrets(), settings.log_format)
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
