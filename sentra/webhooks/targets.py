"""Where a webhook may send: http(s) URLs whose host resolves to public addresses only, unless
`webhooks.allowed_targets` names the host, the address or a network holding it.

The check runs when a webhook is registered and again at every delivery, inside the HTTP client's resolver
(CheckedResolver): the addresses checked are the addresses connected to, so a DNS answer that changes between
the check and the connection cannot lead a delivery to an internal address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tornado.netutil import Resolver

SETTING = "webhooks.allowed_targets"
MAX_URL_LENGTH = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services: link-local or unique-local already, named so the refusal says what they are.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class TargetRefused(Exception):
    """The URL or an address its host resolves to may not be sent to; the message names the setting."""


def check_url(url: str) -> tuple[str, int]:
    """The host and port of a webhook URL; TargetRefused unless it is an http(s) URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"{url[:100]!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"{url[:100]!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise TargetRefused(f"{url[:100]!r} names no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def kind_of(address: Address) -> str | None:
    """Why an address is not public ("loopback", "private", …), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return kind_of(embedded)
    checks = (
        (address in METADATA, "cloud metadata"),
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "shared (CGNAT)"),
        (isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"), "unique-local"),
        (address.is_private, "private"),
        (not address.is_global or address.is_reserved, "reserved"),
    )
    return next((kind for refused, kind in checks if refused), None)


@dataclass(frozen=True)
class TargetPolicy:
    """The hosts and networks `webhooks.allowed_targets` allows besides public addresses."""

    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> TargetPolicy:
        """The policy of the setting's entries: addresses, CIDRs or host names."""
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: Address) -> str | None:
        """Why `host`, resolved to `address`, may not be sent to; None if it may."""
        if host.lower().rstrip(".") in self.hosts or any(address in network for network in self.networks):
            return None
        kind = kind_of(address)
        if kind is None:
            return None
        return (
            f"{host} resolves to {address}, a {kind} address: webhooks go to public addresses only, "
            f"unless {SETTING} names the host, the address or its network"
        )

    async def addresses(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple[int, Any]]:
        """What `host` resolves to, as (family, socket address) pairs to connect to; TargetRefused if it does not
        resolve or any of its addresses is refused (a host with one internal address is refused whole)."""
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise TargetRefused(f"{host} does not resolve: {exc}") from None
        resolved: list[tuple[int, Any]] = [(info[0], info[4]) for info in found]
        for _, sockaddr in resolved:
            refusal = self.refusal(host, ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
            if refusal is not None:
                raise TargetRefused(refusal)
        if not resolved:
            raise TargetRefused(f"{host} does not resolve")
        return resolved

    async def check(self, url: str) -> None:
        """TargetRefused unless `url` may be sent to now (registration's check)."""
        host, port = check_url(url)
        await self.addresses(host, port)


class CheckedResolver(Resolver):
    """tornado's HTTP client resolves through this: only checked addresses are ever connected to."""

    def initialize(self, policy: TargetPolicy) -> None:
        """Keep the policy (tornado's Configurable calls this in place of __init__)."""
        self.policy = policy

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        """The host's addresses, if every one of them may be sent to."""
        return await self.policy.addresses(host, port, family)
