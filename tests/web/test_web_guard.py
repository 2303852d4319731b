"""The address guard on its own: which addresses are public, every way of writing one, and
what `allow_private` / `allow_hosts` open up."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.web.config import WebConfig
from bot.web.guard import AddressGuard, FetchRefused, parse_host_literal


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0.0.1.", "10.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ],
)
def test_every_way_of_writing_an_address_is_read_as_that_address(host: str, address: str) -> None:
    assert parse_host_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host", ["example.com", "page.test", "0x7g000001", "08.0.0.1", "1.2.3.4.5", "256.1.1.1"]
)
def test_names_are_not_addresses(host: str) -> None:
    assert parse_host_literal(host) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("168.63.129.16", "metadata"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "metadata"),  # 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    why = AddressGuard().refusal("some.host", ipaddress.ip_address(address))
    assert why is not None and kind in why
    with pytest.raises(FetchRefused, match="refused"):
        AddressGuard().check("some.host", [ipaddress.ip_address(address)])


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    AddressGuard().check("example.com", [ipaddress.ip_address(address)])


def test_one_private_record_among_public_ones_refuses_the_host() -> None:
    addresses = [ipaddress.ip_address(a) for a in ("93.184.216.34", "10.0.0.1")]
    with pytest.raises(FetchRefused, match=r"10\.0\.0\.1"):
        AddressGuard().check("rebind.example", addresses)
    with pytest.raises(FetchRefused, match="did not resolve"):
        AddressGuard().check("empty.example", [])


def test_allow_private_opens_private_ranges_but_not_metadata_or_multicast() -> None:
    guard = AddressGuard(allow_private=True)
    for address in ("10.0.0.1", "127.0.0.1", "::1", "100.64.0.1", "192.168.0.10"):
        assert guard.refusal("intranet", ipaddress.ip_address(address)) is None
    for address in ("169.254.169.254", "fd00:ec2::254", "224.0.0.1", "0.0.0.0"):
        assert guard.refusal("intranet", ipaddress.ip_address(address)) is not None


def test_allow_hosts_by_name_suffix_and_network() -> None:
    guard = AddressGuard(allow_hosts=["wiki.lan", "*.corp.example", "192.168.7.0/24", "::1"])
    ten = ipaddress.ip_address("10.0.0.1")
    assert guard.refusal("wiki.lan", ten) is None
    assert guard.refusal("WIKI.LAN.", ten) is None
    assert guard.refusal("git.corp.example", ten) is None
    assert guard.refusal("corp.example.evil", ten) is not None
    assert guard.refusal("other.lan", ten) is not None
    assert guard.refusal("any", ipaddress.ip_address("192.168.7.20")) is None
    assert guard.refusal("any", ipaddress.ip_address("192.168.8.20")) is not None
    assert guard.refusal("any", ipaddress.ip_address("::1")) is None
    # a listed name that resolves to a metadata address is still refused; only an
    # address entry opens that
    assert guard.refusal("wiki.lan", ipaddress.ip_address("169.254.169.254")) is not None
    listed = AddressGuard(allow_hosts=["169.254.169.254"])
    assert listed.refusal("any", ipaddress.ip_address("169.254.169.254")) is None


def test_allow_hosts_entries_are_validated(make_config: object) -> None:
    assert WebConfig(allow_hosts=["Wiki.LAN.", "10.0.0.0/8"]).allow_hosts == [
        "wiki.lan",
        "10.0.0.0/8",
    ]
    with pytest.raises(ConfigError, match=r"web\.allow_hosts"):
        make_config(web={"allow_hosts": ["http://wiki.lan/"]})  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"web\.search\.0\.api_key_env.*environment variable"):
        make_config(web={"search": [{"type": "brave", "api_key_env": "BSA-123-abc"}]})  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"web\.serach: unknown key"):
        make_config(web={"serach": []})  # type: ignore[operator]


def test_security_audit_reports_an_open_guard(make_config: Any) -> None:
    from bot.security.audit import audit

    open_guard = make_config(web={"allow_private": True}, gateway={"owners": ["telegram:1"]})
    [finding] = [f for f in audit(open_guard, None) if "web.allow_private" in f.what]
    assert finding.risk == "high" and "allow_hosts" in finding.fix
    listed = make_config(web={"allow_hosts": ["wiki.lan"]}, gateway={"owners": ["telegram:1"]})
    assert not [f for f in audit(listed, None) if "web." in f.what]
