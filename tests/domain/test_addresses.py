"""Addresses: which IPs webhooks may be sent to."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain.addresses import (
    ALWAYS,
    AddressPolicy,
    address_allowed,
    is_loopback_host,
    local_only,
    parse_networks,
)

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
flags = st.fixed_dictionaries({"block_private": st.booleans(), "block_loopback": st.booleans()})


class TestAlwaysDenied:
    """Metadata, link-local, 0.0.0.0/8, :: and multicast are refused whatever the settings."""

    @pytest.mark.parametrize(
        ("ip", "reason"),
        [
            ("169.254.169.254", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fe80::1%eth0", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
        ],
    )
    def test_denied(self, ip: str, reason: str) -> None:
        assert address_allowed(ip) == reason
        assert address_allowed(ip, block_private=True, block_loopback=True) == reason

    @pytest.mark.parametrize(
        "ip", ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fd00:ec2::254%eth0"]
    )
    def test_disguised_metadata(self, ip: str) -> None:
        assert address_allowed(ip) == "cloud metadata"

    @given(st.integers(0, 2**16 - 1), flags)
    def test_all_of_link_local(self, low: int, kw: dict[str, bool]) -> None:
        ip = ipaddress.IPv4Address(int(ipaddress.IPv4Address("169.254.0.0")) + low)
        assert address_allowed(ip, **kw) is not None


class TestOptional:
    """Private ranges and loopback are refused only when asked."""

    @pytest.mark.parametrize(
        "ip",
        [
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "fc00::1",
            "fd12::1",
            "100.64.0.1",
            "::ffff:10.0.0.1",
        ],
    )
    def test_private(self, ip: str) -> None:
        assert address_allowed(ip) is None
        assert address_allowed(ip, block_private=True) == "private network"
        assert address_allowed(ip, block_loopback=True) is None

    @pytest.mark.parametrize("ip", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
    def test_loopback(self, ip: str) -> None:
        assert address_allowed(ip) is None
        assert address_allowed(ip, block_loopback=True) == "loopback"
        assert address_allowed(ip, block_private=True) is None

    @pytest.mark.parametrize("ip", ["8.8.8.8", "172.32.0.1", "2001:4860:4860::8888", "1.1.1.1"])
    def test_public(self, ip: str) -> None:
        assert address_allowed(ip, block_private=True, block_loopback=True) is None

    def test_extra(self) -> None:
        nets = parse_networks("203.0.113.0/24, 2001:db8::/32")
        assert address_allowed("203.0.113.9", extra_denied=nets) == (
            "in denied network 203.0.113.0/24"
        )
        assert address_allowed("2001:db8::1", extra_denied=nets) is not None
        assert address_allowed("203.0.114.1", extra_denied=nets) is None

    def test_not_an_address(self) -> None:
        with pytest.raises(ValueError):
            address_allowed("example.com")


class TestProperties:
    """Verdicts are consistent across forms of an address and monotonic in the settings."""

    @given(ipv4, flags)
    def test_mapped_form_same_verdict(self, ip: ipaddress.IPv4Address, kw: dict[str, bool]) -> None:
        mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
        nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) + int(ip))
        verdict = address_allowed(ip, **kw)
        assert (address_allowed(mapped, **kw) is None) == (verdict is None)
        assert (address_allowed(nat64, **kw) is None) == (verdict is None)

    @given(st.one_of(ipv4, ipv6), flags)
    def test_more_blocking_never_allows_more(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, kw: dict[str, bool]
    ) -> None:
        if address_allowed(ip, **kw) is not None:
            assert address_allowed(ip, block_private=True, block_loopback=True) is not None

    @given(st.one_of(ipv4, ipv6))
    def test_default_allows_only_outside_always_denied(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> None:
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if address_allowed(ip) is None:
            assert not plain.is_link_local and not plain.is_multicast
            assert not plain.is_unspecified

    @given(st.one_of(ipv4, ipv6), st.integers(0, 32))
    def test_extra_networks_deny_their_members(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
    ) -> None:
        net = ipaddress.ip_network(f"{ip}/{prefix * ip.max_prefixlen // 32}", strict=False)
        assert address_allowed(ip, extra_denied=[net]) is not None


class TestPolicy:
    """The policy turns a verdict into an error message."""

    def test_message(self) -> None:
        policy = AddressPolicy(block_loopback=True)
        assert policy.refusal("127.0.0.1") == "address 127.0.0.1 is not allowed (loopback)"
        assert policy.refusal("169.254.169.254") == (
            "address 169.254.169.254 is not allowed (cloud metadata)"
        )
        assert policy.refusal("93.184.216.34") is None

    def test_not_an_ip(self) -> None:
        assert AddressPolicy().refusal("127.1") == "'127.1' is not a valid IP address"

    def test_parse_networks(self) -> None:
        assert parse_networks("") == ()
        assert parse_networks(" 10.1.2.3/16 ,") == (ipaddress.IPv4Network("10.1.0.0/16"),)
        with pytest.raises(ValueError):
            parse_networks("10.0.0.0/33")


class TestLocalOnly:
    """`auto` blocks loopback and private targets unless the server is local-only."""

    @pytest.mark.parametrize(
        ("host", "url", "local"),
        [
            ("127.0.0.1", "http://127.0.0.1:8000", True),
            ("::1", "http://[::1]:8000", True),
            ("localhost", "http://localhost:8000", True),
            ("127.0.0.2", "http://127.0.0.2:8000", True),
            ("0.0.0.0", "http://127.0.0.1:8000", False),
            ("::", "http://127.0.0.1:8000", False),
            ("10.0.0.5", "http://10.0.0.5:8000", False),
            ("127.0.0.1", "https://crm.example.com", False),  # behind a reverse proxy
            ("127.0.0.1", "", False),
        ],
    )
    def test_local_only(self, host: str, url: str, local: bool) -> None:
        assert local_only(host, url) is local

    @given(flags, st.booleans())
    def test_decided_settings_win(self, given_flags: dict[str, bool], local: bool) -> None:
        policy = AddressPolicy.decide(given_flags["block_private"],
                                      given_flags["block_loopback"], (), local=local)
        assert (policy.block_private, policy.block_loopback) == (
            given_flags["block_private"], given_flags["block_loopback"])

    def test_auto(self) -> None:
        assert AddressPolicy.decide(None, None, (), local=True) == AddressPolicy()
        assert AddressPolicy.decide(None, None, (), local=False) == AddressPolicy(
            block_private=True, block_loopback=True)
        assert not is_loopback_host("") and not is_loopback_host("localhost.example")


class TestUrlRefusal:
    """A URL that can never be delivered to is known before any lookup."""

    @pytest.mark.parametrize(
        "url",
        ["ftp://x.example/", "http://", "https:///path", "http://x.example:port/",
         "http://169.254.169.254/", "http://[fe80::1%25eth0]/", "http://127.1/",
         "http://0.0.0.0/"],
    )
    def test_refused(self, url: str) -> None:
        assert ALWAYS.url_refusal(url) is not None

    @pytest.mark.parametrize(
        "url", ["https://hooks.example.com/x?a=1", "http://127.0.0.1:9/", "http://[::1]/",
                "http://localhost.example/", "http://10.1.2.3/"],
    )
    def test_allowed(self, url: str) -> None:
        assert ALWAYS.url_refusal(url) is None

    def test_names_wait_for_resolution(self) -> None:
        strict = AddressPolicy(block_private=True, block_loopback=True)
        assert strict.url_refusal("http://127.0.0.1/") is not None
        assert strict.url_refusal("http://[::ffff:10.0.0.1]/") is not None
        assert strict.url_refusal("http://localhost/") is None
