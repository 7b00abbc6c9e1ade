"""The real client address behind a reverse proxy or a PaaS router.

``X-Forwarded-For`` and ``Forwarded`` are only believed when the connection comes from a
trusted proxy, and then only as far as the chain of trusted proxies goes: the address is
the right-most entry that is not itself a trusted proxy. Entries further left were written
by the client and prove nothing, so a client cannot spoof its way past the per-address
limits. ``*`` trusts the connecting peer (a PaaS router) but not what the client wrote
before it: the right-most entry wins.

The address taken must be an IP address (written the canonical way, so one address has one
spelling): anything else (``unknown``, an obfuscated ``_id``, any string) would become a
client id of its own choosing and sidestep the per-address caps. Then the peer's own address
is used, and the first such header is logged. Only the right-most ``MAX_HOPS`` entries are
read: a 200 KB chain of trusted addresses took 50 ms to walk.

:class:`IngressMiddleware` is Home Assistant's Ingress, on a port of its own (see there).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from collections.abc import Awaitable, Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .parsers import Secret
from .untrusted import loggable

__all__ = ["Ingress", "IngressMiddleware", "ProxyHeadersMiddleware", "TrustedProxies"]

_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;\s])for=(?:"([^"]*)"|([^;,\s]*))')
_FORWARDED_PROTO = re.compile(r'(?i)(?:^|[;\s])proto=(?:"([^"]*)"|([^;,\s]*))')

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("sse_service.proxy")

MAX_HOPS = 32  # forwarded entries read, from the right; no real chain of proxies is longer


class TrustedProxies:
    def __init__(self, specs: Iterable[str]) -> None:
        specs = tuple(specs)
        self.any_peer = "*" in specs
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(s, strict=False) for s in specs if s != "*")
        self.reported_invalid = False

    def __contains__(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def trusts_peer(self, host: str) -> bool:
        return self.any_peer or host in self

    def client(self, chain: list[str]) -> str | None:
        """The client's address from a forwarded chain (left: client … right: last proxy).

        None when the entry that names the client is not an IP address.
        """
        for host in reversed(chain):
            if host not in self:
                return _address(host)
        return _address(chain[0]) if chain else None

    def report_invalid(self, peer: str, chain: list[str]) -> None:
        """Log, once, that a trusted proxy sent a forwarded address that is not one."""
        if self.reported_invalid:
            return
        self.reported_invalid = True
        log.warning(
            "A trusted proxy (%s) forwarded a client address that is not an IP address (%r); "
            "the proxy's own address is used instead (logged once)",
            loggable(peer, 64),
            loggable(",".join(chain[-3:]), 120),
        )


def _address(host: str) -> str | None:
    """``host`` as a canonical IP address (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _unquote_host(value: str) -> str:
    host = value.strip().strip('"')
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:  # v4:port
        return host.split(":")[0]
    return host


def _last_hops(values: list[str]) -> list[str]:
    """The right-most ``MAX_HOPS`` comma-separated entries of a header's values."""
    entries = ",".join(values).rsplit(",", MAX_HOPS)
    return entries[-MAX_HOPS:]


def _forwarded_chain(headers: Headers) -> list[str]:
    forwarded = headers.getlist("forwarded")
    if forwarded:
        chain = []
        for element in _last_hops(forwarded):
            match = _FORWARDED_FOR.search(element)
            if match:
                chain.append(_unquote_host(match.group(1) or match.group(2) or ""))
            else:
                chain.append("")
        return chain
    return [_unquote_host(h) for h in _last_hops(headers.getlist("x-forwarded-for")) if h.strip()]


def _forwarded_proto(headers: Headers) -> str | None:
    forwarded = headers.getlist("forwarded")
    if forwarded:
        match = _FORWARDED_PROTO.search(forwarded[-1].split(",")[-1])
        proto = (match.group(1) or match.group(2)) if match else None
    else:
        proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip() or None
    return proto.lower() if proto and proto.lower() in ("http", "https") else None


class ProxyHeadersMiddleware:
    """Rewrites ``scope["client"]`` (and the scheme) from forwarded headers of trusted peers."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: no frame of ours stays alive under every open stream.
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if peer and self.trusted.trusts_peer(str(peer[0])):
                headers = Headers(raw=scope["headers"])  # scope= would put a copy of the list in the scope
                chain = _forwarded_chain(headers)
                host = self.trusted.client(chain) if chain else None
                if host:
                    scope = dict(scope, client=(host, 0))
                elif chain:
                    self.trusted.report_invalid(str(peer[0]), chain)
                proto = _forwarded_proto(headers)
                if proto:
                    scheme = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
                    scope = dict(scope, scheme=scheme)
        return self.app(scope, receive, send)


# What the Supervisor sends as X-Ingress-Path: /api/hassio_ingress/<token>. Anything else is ignored.
_INGRESS_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")


@dataclasses.dataclass(frozen=True)
class Ingress:
    """Home Assistant's Ingress: the port it is served on, who may connect to it, and the
    credential a request on it is given (``Keys.ingress``: random, made at start, never shown)."""

    port: int
    peers: TrustedProxies
    credential: Secret


class IngressMiddleware:
    """Requests on the ingress port: only from the Supervisor, and already authenticated.

    Home Assistant's Supervisor proxies ``/api/hassio_ingress/<token>/…`` to this port after its
    own login, with the prefix stripped and named in ``X-Ingress-Path``. So on this port, and
    only here (the port the socket was accepted on, ``scope["server"]``, which no header can
    change): a peer other than the Supervisor's address gets 403 before anything else runs; a
    request from it carries the ingress credential in place of any ``Authorization`` it had, so
    the routes' usual key check lets it read and command; and the prefix becomes the
    ``root_path``. Requests on the main port pass through untouched: nothing said there can
    make a request count as one from Ingress. Goes outside ``ProxyHeadersMiddleware``: the
    address checked is the connection's, not a forwarded one.
    """

    def __init__(self, app: ASGIApp, ingress: Ingress) -> None:
        self.app = app
        self.ingress = ingress
        self._bearer = b"Bearer " + ingress.credential.reveal().encode()
        self._refused_logged = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        server = scope.get("server")
        if scope["type"] not in ("http", "websocket") or not server or server[1] != self.ingress.port:
            return self.app(scope, receive, send)
        peer = scope.get("client")
        host = str(peer[0]) if peer else ""
        if host not in self.ingress.peers:
            if not self._refused_logged:
                self._refused_logged = True
                log.warning(
                    "Refused a request to the ingress port from %s: only the Supervisor may use it (logged once)",
                    loggable(host or "unknown", 64),
                )
            body = {"error": {"code": "forbidden", "message": "this port is only for Home Assistant's Ingress"}}
            return JSONResponse(body, status_code=403)(scope, receive, send)
        headers = [(name, value) for name, value in scope["headers"] if name != b"authorization"]
        headers.append((b"authorization", self._bearer))
        scope = dict(scope, headers=headers)
        prefix = Headers(raw=headers).get("x-ingress-path", "").rstrip("/")
        if prefix and _INGRESS_PATH.fullmatch(prefix) and ".." not in prefix.split("/"):
            # As ASGI has it: the path includes the root_path (Starlette's routing strips it).
            scope["root_path"] = prefix
            scope["path"] = prefix + scope["path"]
            scope["raw_path"] = prefix.encode() + scope.get("raw_path", scope["path"].encode())
        return self.app(scope, receive, send)
