"""The lab's swarm, as data: two nodes, two overlay networks, the services and their sandboxes.

Addresses follow Docker's conventions: the ingress network is created first (VNI 4096,
10.0.0.0/24), a user network next (VNI 4097, 10.0.1.0/24); a container's MAC is
``02:42`` followed by its IPv4 address; identifiers are derived from names, so two runs
describe the same swarm with the same identifiers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

MTU = 1450
"""Docker's overlay MTU: 1500 less the 50 bytes of VXLAN encapsulation."""


def docker_mac(ip: IPv4Address) -> str:
    """The MAC Docker gives an endpoint: 02:42 then the four bytes of its address."""
    return ":".join(f"{b:02x}" for b in b"\x02\x42" + ip.packed)


def hex_id(*parts: str) -> str:
    """A 64-hex-digit identifier (container, endpoint) derived from ``parts``."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def swarm_id(*parts: str) -> str:
    """A 25-character base-36 identifier (network, task) derived from ``parts``, as swarmkit prints them."""
    value = int(hex_id(*parts), 16)
    digits = []
    for _ in range(25):
        value, digit = divmod(value, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[digit])
    return "".join(digits)


@dataclass(frozen=True)
class Node:
    """A swarm node: its host name and its address on the underlay."""

    name: str
    ip: IPv4Address

    @property
    def mac(self) -> str:
        return docker_mac(self.ip)


@dataclass(frozen=True)
class Network:
    """An overlay network: one VXLAN segment."""

    name: str
    vni: int
    subnet: IPv4Network
    ingress: bool

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def id(self) -> str:
        return swarm_id("network", self.name)

    @property
    def vxlan_name(self) -> str:
        """The VXLAN device's name, as Docker forms it: ``vx-<vni in hex>-<network id>``."""
        return f"vx-{self.vni:06x}-{self.id[:5]}"


@dataclass(frozen=True)
class Endpoint:
    """A sandbox's interface on one network."""

    network: Network
    ip: IPv4Address
    interface: str

    @property
    def mac(self) -> str:
        return docker_mac(self.ip)


@dataclass(frozen=True)
class Sandbox:
    """A network namespace on a node: a service task, or the node's ingress sandbox."""

    name: str
    node: Node
    endpoints: tuple[Endpoint, ...]
    service: str | None = None

    @property
    def container_id(self) -> str:
        return hex_id("container", self.name)

    @property
    def task_name(self) -> str:
        """Docker's task name: ``<service>.<slot>.<task id>``."""
        return f"{self.name}.{swarm_id('task', self.name)}"

    def endpoint_id(self, endpoint: Endpoint) -> str:
        return hex_id("endpoint", self.name, endpoint.network.name)

    def endpoint_on(self, network: Network) -> Endpoint | None:
        return next((e for e in self.endpoints if e.network == network), None)


@dataclass(frozen=True)
class Service:
    """A swarm service: its virtual IP on each network, its port, and whether ingress publishes it."""

    name: str
    port: int
    vips: tuple[tuple[Network, IPv4Address], ...]
    published: bool


@dataclass(frozen=True)
class Swarm:
    nodes: tuple[Node, ...]
    networks: tuple[Network, ...]
    services: tuple[Service, ...]
    sandboxes: tuple[Sandbox, ...]

    def sandbox(self, name: str) -> Sandbox:
        return next(s for s in self.sandboxes if s.name == name)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def members(self, network: Network) -> tuple[tuple[Sandbox, Endpoint], ...]:
        """Every sandbox on ``network``, with its endpoint there."""
        return tuple((s, e) for s in self.sandboxes for e in s.endpoints if e.network == network)

    def nodes_on(self, network: Network) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if any(s.node == n for s, _ in self.members(network)))


def _build() -> Swarm:
    host01 = Node("host01", IPv4Address("172.17.0.71"))
    host02 = Node("host02", IPv4Address("172.17.0.74"))
    ingress = Network("ingress", 4096, IPv4Network("10.0.0.0/24"), ingress=True)
    app = Network("app", 4097, IPv4Network("10.0.1.0/24"), ingress=False)

    def at(network: Network, host: int, interface: str) -> Endpoint:
        return Endpoint(network, network.subnet.network_address + host, interface)

    return Swarm(
        nodes=(host01, host02),
        networks=(ingress, app),
        services=(
            Service("redis", 6379, ((app, app.subnet.network_address + 2),), published=False),
            Service(
                "web", 3000,
                ((ingress, ingress.subnet.network_address + 3), (app, app.subnet.network_address + 4)),
                published=True,
            ),
        ),
        sandboxes=(
            Sandbox("ingress-sbox", host01, (at(ingress, 2, "eth0"),)),
            Sandbox("redis.1", host01, (at(app, 3, "eth0"),), service="redis"),
            Sandbox("web.1", host02, (at(ingress, 4, "eth0"), at(app, 5, "eth1")), service="web"),
        ),
    )


SWARM = _build()
CAPTURE_NODE = SWARM.nodes[0]
"""The node whose underlay interface the lab captures on, and whose view the inspect JSON gives."""
