"""Who is calling: the client's address (through trusted proxies only) and its API key."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # aiohttp is imported after the workers are started (gateway/server.py)
    from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Caller:
    """Whose request it is: `key:<fingerprint>`, or the client's address when it sent no key.
    Rate-limit buckets and shares of a model are per caller."""

    id: str
    may_load: bool = True  # may its request load a model that is not loaded


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def client_address(request: web.Request, trusted: list[Network]) -> str:
    """The peer's address; behind trusted proxies, the rightmost X-Forwarded-For entry that is not
    one of them. Forwarded headers from anyone else are ignored, so a client cannot choose its
    own address (and with it, its rate-limit bucket)."""
    peer = request.remote or "unknown"
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    for hop in reversed(hops):
        if hop and not _in(hop, trusted):
            return hop
    return peer


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def presented_key(request: web.Request) -> str | None:
    """`Authorization: Bearer KEY`, or `x-api-key: KEY` as Anthropic-style clients send it."""
    auth = request.headers.get("Authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return request.headers.get("x-api-key") or None


def fingerprint(key: str) -> str:
    """A short, stable name for a key in logs and bucket tables; never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]
