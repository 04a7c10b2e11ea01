"""Which IP addresses webhooks may be sent to. Pure.

Always refused: cloud metadata endpoints, link-local, "this network" (0.0.0.0/8, ::),
multicast, and any extra networks the operator lists. Private ranges and loopback are refused
only when asked (loopback stays reachable by default for local development).
An IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address is judged as the IPv4
address it reaches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

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


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The operator's choices, applied by `refusal`."""

    block_private: bool = False
    block_loopback: bool = False
    extra_denied: tuple[IPNetwork, ...] = ()

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
