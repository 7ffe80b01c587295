"""Hosts of their own on one machine: network namespaces joined by a bridge.

Each host is a network namespace with one address, wired to a bridge in the machine's own
namespace by a veth pair; the bridge holds the gateway address, where the sandbox's servers
listen. Taking a host's veth down on the bridge side cuts it off the way a pulled cable or a
dead switch port does: its processes keep running, its packets go nowhere, and nobody is
told. Everything is named with a random tag, so two test sessions do not collide, and
`remove()` deletes it all. Needs root and `ip` (iproute2).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from signing.ops.workers import WorkerPool


class NetworkUnavailable(RuntimeError):
    """This machine cannot make namespaces (not root, no iproute2, no veth or bridge)."""


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its address, and its link (the bridge's end of its veth)."""

    namespace: str
    address: str
    link: str
    peer: str


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run iproute2's `ip`; CalledProcessError (with its stderr) if it refuses."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=True)


class HostNetwork:
    """`count` hosts on a 10.77.x.0/24 that no interface of this machine uses yet; the
    bridge has .1 (the gateway), the hosts .2, .3, ..."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.tag = secrets.token_hex(3)
        self.bridge = f"sg{self.tag}br"
        self.gateway = ""
        self.prefix = 24
        self.hosts: list[Host] = []

    def create(self) -> HostNetwork:
        """Make the bridge and the hosts; NetworkUnavailable (after undoing it) if refused."""
        if os.geteuid() != 0:
            raise NetworkUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetworkUnavailable("ip (iproute2) not found")
        try:
            addresses = [str(address) for address in _free_subnet().hosts()]
            self.gateway = addresses[0]
            self.hosts = [
                Host(
                    namespace=f"signing-{self.tag}-host{index}",
                    address=addresses[index + 1],
                    link=f"sg{self.tag}h{index}",
                    peer=f"sg{self.tag}n{index}",
                )
                for index in range(self.count)
            ]
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                self._add(host)
        except subprocess.CalledProcessError as error:
            self.remove()
            raise NetworkUnavailable(f"{' '.join(error.cmd)}: {error.stderr.strip()}") from None
        return self

    def _add(self, host: Host) -> None:
        ip("netns", "add", host.namespace)
        ip("link", "add", host.link, "type", "veth", "peer", "name", host.peer)
        ip("link", "set", host.peer, "netns", host.namespace)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        inside = ("netns", "exec", host.namespace, "ip")
        ip(*inside, "addr", "add", f"{host.address}/{self.prefix}", "dev", host.peer)
        ip(*inside, "link", "set", host.peer, "up")
        ip(*inside, "link", "set", "lo", "up")

    def cut(self, host: Host) -> None:
        """Take the host's link down: from now on nothing it sends arrives, nor the reverse."""
        ip("link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.link, "up")

    def remove(self) -> None:
        """Delete whatever exists of it (a namespace takes its end of the veth with it)."""
        for host in self.hosts:
            for command in (("link", "del", host.link), ("netns", "del", host.namespace)):
                subprocess.run(["ip", *command], capture_output=True, timeout=30, check=False)
        subprocess.run(
            ["ip", "link", "del", self.bridge], capture_output=True, timeout=30, check=False
        )

    def leftovers(self) -> list[str]:
        """What of it still exists (none after remove(): the tests check)."""
        namespaces = ip("netns", "list").stdout
        links = ip("-brief", "link").stdout
        names = [self.bridge, *(host.link for host in self.hosts)]
        return [host.namespace for host in self.hosts if host.namespace in namespaces] + [
            name for name in names if name in links
        ]


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.77.x.0/24 that no address of this machine is in (another session's bridge)."""
    used = ip("-brief", "-4", "addr").stdout
    for _ in range(50):
        octet = secrets.randbelow(256)
        if f"10.77.{octet}." not in used:
            return ipaddress.IPv4Network(f"10.77.{octet}.0/24")
    raise NetworkUnavailable("no free 10.77.x.0/24 left")


class HostWorkerPool(WorkerPool):
    """A worker pool started inside a host's namespace. `ip netns exec` execs the command in
    place, so the pool's process id, group and log are what WorkerPool expects."""

    def __init__(self, host: Host, *, env: dict[str, str], log_file: Path) -> None:
        super().__init__(processes=1, threads=2, env=env, log_file=log_file)
        self.host = host

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.host.namespace, *super().command()]
