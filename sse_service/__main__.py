"""``python -m sse_service`` / ``sse-service``: read the settings, then serve.

``sse-service token …`` prints a token signed with ``TOKEN_SECRET`` instead (tokens.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .app import create_app
from .check import run_check
from .config import ConfigError, load_settings
from .logs import setup_logging
from .parsers import entity_globs, service_globs
from .server import serve
from .service import Service
from .tokens import mint, parse_expiry

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
    commands = parser.add_subparsers(
        dest="command",
        metavar="{check,token}",
        help="check: connect to HA once and report; token: print a signed token",
    )
    commands.add_parser(
        "check",
        help="validate the settings, connect to Home Assistant once and say what it finds",
        description="Validate the settings, then connect to Home Assistant once and print its version, whether "
        "the token is accepted, how many entities ENTITIES exposes, which ALLOWED_SERVICES exist, and whether "
        "the recorder is there. Exit status 1 on any problem, with the reason.",
    )
    token = commands.add_parser(
        "token",
        help="print a token signed with TOKEN_SECRET",
        description="Print a JWT (HS256) signed with TOKEN_SECRET, read from the same settings as the service. "
        "What it sees is always narrowed by ENTITIES, what it may call by ALLOWED_SERVICES.",
    )
    token.add_argument("--entities", required=True, help="comma-separated entity globs it sees, e.g. 'sensor.solar_*'")
    token.add_argument("--services", help="comma-separated service globs it may call, e.g. 'switch.turn_*' (none)")
    token.add_argument("--expires", help="lifetime (30m, 12h, 7d, 2w) or a time (2026-12-06T18:00); default: never")
    token.add_argument("--name", help="its sub: the name logs and /metrics show, e.g. public-site")
    token.add_argument("--id", help="its jti, for TOKEN_REVOKED (default: random)")
    args = parser.parse_args(argv)
    if args.command == "token":
        return _print_token(args)

    environ = dict(os.environ)
    flags = (
        ("HOST", args.host, "--host"),
        ("PORT", args.port, "--port"),
        ("GRACEFUL_TIMEOUT", args.graceful_timeout, "--graceful-timeout"),
        ("FORWARDED_ALLOW_IPS", args.forwarded_allow_ips, "--forwarded-allow-ips"),
        ("MAX_STREAM_AGE", args.max_stream_age, "--max-stream-age"),
    )
    typed = {}
    for name, value, flag in flags:
        if value is not None:
            environ[name] = value
            typed[name] = flag
    try:
        settings = load_settings(environ)
    except ConfigError as e:
        message = str(e)
        if e.setting in typed:  # name what the user typed, not the variable behind it
            message = typed[e.setting] + message[len(e.setting) :]
        print(f"sse-service: configuration error: {message}", file=sys.stderr)
        return 2
    if args.command == "check":
        return asyncio.run(run_check(settings))
    if args.check:
        print("sse-service: configuration OK")
        return 0
    setup_logging(settings.log_level, settings.secrets(), settings.log_format)
    config_file = environ.get("CONFIG_FILE", "").strip()
    service = Service(settings, reload=lambda: load_settings(environ), watch=Path(config_file) if config_file else None)
    return serve(service, create_app(service))


def _print_token(args: argparse.Namespace) -> int:
    """The token on stdout (for ``TOKEN=$(sse-service token …)``), what it grants on stderr."""
    try:
        settings = load_settings(os.environ)
        if settings.token_secret is None:
            raise ConfigError("TOKEN_SECRET", "required to sign tokens (the service verifies them with the same value)")
        entities = entity_globs("--entities", args.entities)
        services = service_globs("--services", args.services) if args.services else ()
        if args.name is not None and (not args.name.strip() or not args.name.isprintable()):
            raise ConfigError("--name", "expected a printable name like public-site")
        try:
            expires = parse_expiry(args.expires) if args.expires else None
        except ValueError as e:
            raise ConfigError("--expires", str(e)) from None
    except ConfigError as e:
        print(f"sse-service: configuration error: {e}", file=sys.stderr)
        return 2
    jti = args.id or secrets.token_hex(8)
    name = args.name.strip() if args.name else None
    print(mint(settings.token_secret, entities=entities, services=services, expires=expires, sub=name, jti=jti))
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires)) if expires is not None else "never"
    print(
        f"sse-service: token {name or '(no name)'} (jti {jti}): sees {','.join(entities)}"
        f" (within ENTITIES={','.join(settings.entities)}), calls {','.join(services) or 'no services'}"
        f" (within ALLOWED_SERVICES), expires {until}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
