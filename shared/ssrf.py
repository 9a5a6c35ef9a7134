"""User-supplied webhook URLs may only reach public addresses, checked after DNS resolution (notifier and api).

The check returns the resolved address so the request is sent to exactly that address (the host name
goes in ``Host`` and TLS SNI): a DNS answer that changes between check and connect (rebinding) cannot
redirect the request inside the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeURL(ValueError):
    """A URL that resolves to a loopback, private, link-local or otherwise special address."""


class Unresolvable(UnsafeURL):
    """The host name did not resolve (often for a moment): nothing unsafe is known about it, it cannot be reached."""


def parse_networks(cidrs: list[str]) -> list[Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo) is as public as that address.
        embedded = [a for a in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ())) if a is not None]
        if embedded:
            return all(is_public(a) for a in embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_address(address: IPAddress, allowed: list[Network]) -> None:
    if any(address in net for net in allowed if net.version == address.version):
        return
    if not is_public(address):
        raise UnsafeURL(f"{address} is not a public address (loopback, private, link-local or reserved)")


@dataclass(frozen=True)
class PinnedURL:
    """The URL rewritten to the checked address, and the Host / SNI name to send with it."""

    url: str
    host: str
    address: str


async def resolve_safe(url: str, allowed: list[Network]) -> PinnedURL:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Unresolvable(f"cannot resolve {host!r}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise UnsafeURL(f"{host!r} has no address")
    for address in addresses:  # every answer must be safe: the resolver may hand out any of them
        check_address(address, allowed)
    chosen = addresses[0]
    netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    if parts.port:
        netloc += f":{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return PinnedURL(urlunsplit(parts._replace(netloc=netloc)), host_header, str(chosen))
