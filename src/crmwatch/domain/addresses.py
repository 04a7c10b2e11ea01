"""Which IP addresses webhooks may be sent to. Pure.

Always refused: cloud metadata endpoints, link-local, "this network" (0.0.0.0/8, ::),
multicast, and any extra networks the operator lists. Private ranges and loopback are refused
as the operator decides; left undecided (`auto`), they are refused unless the server is
local-only (`local_only`: it listens on loopback and its public URL is loopback too), which
keeps `serve` on a laptop, and tests, delivering to local receivers.
An IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address is judged as the IPv4
address it reaches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
ALWAYS_DENIED: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("unspecified", _nets("0.0.0.0/8", "::/128")),
    ("link-local", _nets("169.254.0.0/16", "fe80::/10")),
    ("multicast", _nets("224.0.0.0/4", "ff00::/8")),
)
PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "100.64.0.0/10")
LOOPBACK = _nets("127.0.0.0/8", "::1/128")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_allowed(
    ip: IPAddress | str,
    *,
    block_private: bool = False,
    block_loopback: bool = False,
    extra_denied: Iterable[IPNetwork] = (),
) -> str | None:
    """Why `ip` may not be connected to, or None when it may.

    >>> address_allowed("169.254.169.254")
    'cloud metadata'
    >>> address_allowed("10.1.2.3") is None, address_allowed("10.1.2.3", block_private=True)
    (True, 'private network')

    A string that is not an IP address raises ValueError.
    """
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    candidates: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        addr = ipaddress.IPv6Address(int(addr))  # drop any %zone: equality compares it
        candidates = [addr]
        if addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        elif addr in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    for a in candidates:
        reason = _refusal(a, block_private, block_loopback, extra_denied)
        if reason is not None:
            return reason
    return None


def _refusal(
    addr: IPAddress, block_private: bool, block_loopback: bool, extra: Iterable[IPNetwork]
) -> str | None:
    if addr in METADATA:
        return "cloud metadata"
    for reason, nets in ALWAYS_DENIED:
        if _within(addr, nets):
            return reason
    for net in extra:
        if addr.version == net.version and addr in net:
            return f"in denied network {net}"
    if block_private and _within(addr, PRIVATE):
        return "private network"
    if block_loopback and _within(addr, LOOPBACK):
        return "loopback"
    return None


def _within(addr: IPAddress, nets: Iterable[IPNetwork]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (or bare addresses) as networks; host bits are ignored.

    >>> parse_networks("10.1.0.0/16, 2001:db8::/32")
    (IPv4Network('10.1.0.0/16'), IPv6Network('2001:db8::/32'))
    """
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback IP literals (IPv6 in brackets or not).

    >>> is_loopback_host("127.0.0.1"), is_loopback_host("[::1]"), is_loopback_host("0.0.0.0")
    (True, True, False)
    """
    if not host:
        return False
    host = host.strip().strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return _within(addr, LOOPBACK)


def local_only(listen_host: str, public_url: str) -> bool:
    """Whether a server that listens on `listen_host` and is reached at `public_url` can be
    reached from this machine only (local development): both are loopback. A server behind a
    reverse proxy on the same machine listens on loopback but has a public URL elsewhere.

    >>> local_only("127.0.0.1", "http://127.0.0.1:8000"), local_only("0.0.0.0", "")
    (True, False)
    >>> local_only("127.0.0.1", "https://crm.example.com")
    False
    """
    return is_loopback_host(listen_host) and is_loopback_host(urlsplit(public_url).hostname)


def is_ip_literal(host: str) -> bool:
    """Whether a URL's host is an IP literal rather than a name to resolve: exactly the hosts
    aiohttp connects to without resolving (so a bad one such as `127.1` is refused as not an
    IP address instead of being sent anywhere)."""
    return ":" in host or host.replace(".", "").isdigit()


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The operator's choices, applied by `refusal`."""

    block_private: bool = False
    block_loopback: bool = False
    extra_denied: tuple[IPNetwork, ...] = ()

    @classmethod
    def decide(cls, block_private: bool | None, block_loopback: bool | None,
               extra_denied: tuple[IPNetwork, ...], *, local: bool) -> AddressPolicy:
        """The policy of the settings: None (`auto`) blocks unless the server is `local`."""
        return cls(
            block_private=(not local) if block_private is None else block_private,
            block_loopback=(not local) if block_loopback is None else block_loopback,
            extra_denied=extra_denied,
        )

    def url_refusal(self, url: str) -> str | None:
        """Why `url` can never be delivered to, known before any lookup: not http(s), no
        host, or a host that is a denied (or malformed) IP literal. None when it may be
        tried (a name is judged by what it resolves to, at each attempt)."""
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            return "not a valid URL"
        if parts.scheme.lower() not in ("http", "https"):
            return "only http and https URLs can be delivered to"
        host = parts.hostname
        if not host:
            return "the URL has no host"
        return self.refusal(host) if is_ip_literal(host) else None

    def refusal(self, ip: IPAddress | str) -> str | None:
        """An error message when `ip` is denied (or is not an IP address), else None."""
        try:
            reason = address_allowed(
                ip,
                block_private=self.block_private,
                block_loopback=self.block_loopback,
                extra_denied=self.extra_denied,
            )
        except ValueError:
            return f"{ip!r} is not a valid IP address"
        return None if reason is None else f"address {ip} is not allowed ({reason})"


ALWAYS = AddressPolicy()
"""The policy that refuses only what is always refused (metadata, link-local, ...)."""
