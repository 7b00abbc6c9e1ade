"""``python -m sse_service`` / ``sse-service``: read the settings, then serve.

``sse-service check`` connects to Home Assistant once and reports (check.py); ``sse-service token …``
prints a token signed with ``TOKEN_SECRET`` (tokens.py). Every command exits 0 when done, 1 when the
settings are valid but what they point at is not (HA, the port), 2 when a setting or an argument is
wrong (as argparse does for a bad argument), as docs/getting-started.md says.
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
from urllib.parse import urlsplit

from . import __version__
from .app import create_app
from .check import run_check
from .config import SETTINGS, ConfigError, load_settings
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
        "Settings come from environment variables (docs/settings.md); flags override them. "
        "Exit status: 0 done, 1 Home Assistant or the port is not as the settings need, 2 a bad setting.",
    )
    parser.add_argument("--version", action="version", version=f"sse-service {__version__}")
    # The old spelling of `check`, kept working for scripts; one spelling is documented.
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(
        dest="command",
        metavar="{check,token}",
        help="check: connect to HA once and report; token: print a signed token",
    )
    check = commands.add_parser(
        "check",
        help="validate the settings, connect to Home Assistant once and say what it finds",
        description="Validate the settings, then connect to Home Assistant once and print its version, whether "
        "the token is accepted, how many entities ENTITIES exposes, which ALLOWED_SERVICES exist, and whether "
        "the recorder is there. Exit status 0 when all is as the settings need, 1 with each problem in a line, "
        "2 for a bad setting.",
    )
    for command in (parser, check):
        for setting in SETTINGS:
            if setting.flag:
                # SUPPRESS: a flag given before `check` is not reset by the subcommand's default.
                command.add_argument(
                    setting.flag, dest=setting.field, help=setting.flag_help, default=argparse.SUPPRESS
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
    token.add_argument(
        "--link", metavar="BRIDGE_URL", help="print the page's URL on that bridge with the token in it, to share"
    )
    args = parser.parse_args(argv)
    if args.command == "token":
        return _print_token(args)

    environ = dict(os.environ)
    flags = {s.flag: getattr(args, s.field) for s in SETTINGS if s.flag and getattr(args, s.field, None) is not None}
    try:
        settings = load_settings(environ, flags)
    except ConfigError as e:
        print(f"sse-service: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print("sse-service: --check is spelled `sse-service check` now; running that", file=sys.stderr)
    if args.command == "check" or args.check:
        return asyncio.run(run_check(settings))
    setup_logging(settings.log_level, settings.secrets(), settings.log_format)
    config_file = environ.get("CONFIG_FILE", "").strip()
    service = Service(
        settings, reload=lambda: load_settings(environ, flags), watch=Path(config_file) if config_file else None
    )
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
        bridge = urlsplit(args.link) if args.link else None
        if bridge is not None and (bridge.scheme not in ("http", "https") or not bridge.netloc or bridge.query):
            raise ConfigError("--link", f"expected the bridge's address like https://bridge.example, got {args.link!r}")
    except ConfigError as e:
        print(f"sse-service: configuration error: {e}", file=sys.stderr)
        return 2
    jti = args.id or secrets.token_hex(8)
    name = args.name.strip() if args.name else None
    minted = mint(settings.token_secret, entities=entities, services=services, expires=expires, sub=name, jti=jti)
    print(f"{args.link.rstrip('/')}/?key={minted}" if args.link else minted)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires)) if expires is not None else "never"
    print(
        f"sse-service: token {name or '(no name)'} (jti {jti}): sees {','.join(entities)}"
        f" (within ENTITIES={','.join(settings.entities)}), calls {','.join(services) or 'no services'}"
        f" (within ALLOWED_SERVICES), expires {until}",
        file=sys.stderr,
    )
    if args.link:
        # The usual surprise: a link to a bridge on loopback, or on a LAN the guest is not on.
        print(
            f"sse-service: the link works only where the guest's browser can reach {args.link.rstrip('/')}"
            " (on a LAN: HOST=0.0.0.0 and the guest on that network; from anywhere: a deploy, over https)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
