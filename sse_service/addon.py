"""``python -m sse_service.addon``: the bridge as a Home Assistant add-on (``addon/`` in the repository).

The add-on's start script runs this. Its settings are the add-on's options (``/data/options.json``,
written by the Supervisor), read through the same parsers and with the same one-line errors as
the environment; Home Assistant is reached through the Supervisor with its ``SUPERVISOR_TOKEN``
(config.py). Besides the main port (mapped on the host, for tablets and other pages, with the
usual keys) it listens on the ingress port, where only the Supervisor may connect and whatever
comes is already logged in to Home Assistant (proxy.IngressMiddleware).

The ingress port and the Supervisor's address are the add-on's, fixed in its ``config.yaml``
(``ingress_port``) and by the Supervisor (172.30.32.2 on its ``hassio`` network): flags of this
module, not settings a user has.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Sequence

from .app import create_app
from .config import ConfigError, Secret, Settings, load_settings, read_options
from .logs import setup_logging
from .parsers import integer, networks
from .proxy import Ingress, TrustedProxies
from .server import listening_socket, serve
from .service import Service

__all__ = ["OPTIONS", "SUPERVISOR_ADDRESS", "main"]

OPTIONS = "/data/options.json"
SUPERVISOR_ADDRESS = "172.30.32.2"
INGRESS_PORT = 8099

log = logging.getLogger("sse_service")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sse_service.addon", description="Run the bridge as a Home Assistant add-on."
    )
    parser.add_argument("--options", default=OPTIONS, help=f"the add-on's options (default {OPTIONS})")
    parser.add_argument("--ingress-port", default=str(INGRESS_PORT), help=f"default {INGRESS_PORT}")
    parser.add_argument(
        "--ingress-peer", default=SUPERVISOR_ADDRESS, help=f"who may use the ingress port ({SUPERVISOR_ADDRESS})"
    )
    args = parser.parse_args(argv)
    try:
        settings = _settings(args.options)
        ingress_port = integer(1, 65535)("--ingress-port", args.ingress_port)
        peers = networks("--ingress-peer", args.ingress_peer)
        if "*" in peers:
            raise ConfigError("--ingress-peer", "must name the Supervisor's address, not '*'")
        if ingress_port == settings.port:
            raise ConfigError("PORT", f"must differ from the ingress port ({ingress_port})")
    except ConfigError as e:
        # The add-on's log tab shows this line; the Supervisor sees the add-on stop.
        print(f"sse-service: configuration error: {e}", file=sys.stderr)
        return 2
    credential = Secret(secrets.token_urlsafe(32))
    setup_logging(settings.log_level, [*settings.secrets(), credential.reveal()], settings.log_format)
    if settings.demo:
        log.warning("No SUPERVISOR_TOKEN (is homeassistant_api set in config.yaml?): showing the demo instead")
    service = Service(settings, reload=lambda: _settings(args.options), ingress=credential)
    app = create_app(service, ingress=Ingress(ingress_port, TrustedProxies(peers), credential))
    ingress_socket = listening_socket(settings.host, ingress_port)
    log.info("Ingress (Home Assistant's sidebar) on port %d, for %s only", ingress_port, ",".join(peers))
    return serve(service, app, also=ingress_socket)


def _settings(options: str) -> Settings:
    return load_settings(os.environ, options=read_options(options))


if __name__ == "__main__":
    sys.exit(main())
