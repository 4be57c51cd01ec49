"""A small Docker Swarm, and the JSON ``docker network inspect --verbose`` and ``docker service inspect`` print for it.

The field names, their order and their value formats follow Docker's API types
(moby ``api/types/network`` NetworkResource, ServiceInfo, Task; ``api/types/swarm``
Service) and the examples of the Docker CLI reference.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from .entropy import Entropy
from .wire import Interface, Node, docker_mac

VXLANID_LIST = "com.docker.network.driver.overlay.vxlanid_list"
STACK_NAMESPACE = "com.docker.stack.namespace"


@dataclass(frozen=True)
class SwarmNode:
    node: Node
    peer_name: str  # as "Peers" shows it: <hostname>-<unique ID>


@dataclass(frozen=True, eq=False)
class OverlayNetwork:
    name: str
    id: str
    vni: int
    subnet: ipaddress.IPv4Network
    options: dict[str, str]  # options besides the VNI list, as given to `docker network create --opt`
    ingress: bool

    @property
    def encrypted_by_docker(self) -> bool:
        """Docker encrypts when the key "encrypted" is present, whatever its value."""
        return "encrypted" in self.options


@dataclass
class Task:
    service: Service
    slot: int
    id: str
    node: SwarmNode
    container_id: str
    addresses: dict[str, str]  # network name -> IPv4 address
    endpoint_ids: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.service.name}.{self.slot}.{self.id}"


@dataclass
class Service:
    name: str
    id: str
    image: str
    stack: str
    vips: dict[str, str]  # network name -> VIP
    ports: tuple[tuple[int, int], ...]  # (target, published), published through the ingress network
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Swarm:
    entropy: Entropy
    created: str  # RFC 3339 time of the networks' and services' creation
    nodes: list[SwarmNode] = field(default_factory=list)
    networks: list[OverlayNetwork] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    load_balancers: dict[tuple[str, str], tuple[str, str]] = field(
        default_factory=dict
    )  # (network, node) -> (ip, endpoint ID)

    def add_node(self, hostname: str, ip: str) -> SwarmNode:
        mac = b"\x52\x54\x00" + ipaddress.IPv4Address(ip).packed[1:]
        node = SwarmNode(Node(hostname, ip, mac), f"{hostname}-{self.entropy.hex(12)}")
        self.nodes.append(node)
        return node

    def add_network(
        self, name: str, vni: int, subnet: str, options: dict[str, str] | None = None, *, ingress: bool = False
    ) -> OverlayNetwork:
        network = OverlayNetwork(
            name, self.entropy.swarm_id(), vni, ipaddress.IPv4Network(subnet), options or {}, ingress
        )
        self.networks.append(network)
        return network

    def add_load_balancer(self, network: OverlayNetwork, node: SwarmNode, ip: str) -> Interface:
        """The node's load-balancing sandbox on ``network`` (``ingress-sbox`` on the ingress network)."""
        self.load_balancers[(network.name, node.node.name)] = (ip, self.entropy.hex(64))
        return Interface(ip, node.node)

    def add_service(
        self,
        name: str,
        stack: str,
        image: str,
        vips: dict[OverlayNetwork, str],
        ports: tuple[tuple[int, int], ...] = (),
    ) -> Service:
        service = Service(name, self.entropy.swarm_id(), image, stack, {n.name: ip for n, ip in vips.items()}, ports)
        self.services.append(service)
        return service

    def add_task(self, service: Service, node: SwarmNode, addresses: dict[OverlayNetwork, str]) -> Task:
        task = Task(
            service,
            len(service.tasks) + 1,
            self.entropy.swarm_id(),
            node,
            self.entropy.hex(64),
            {n.name: ip for n, ip in addresses.items()},
            {n.name: self.entropy.hex(64) for n in addresses},
        )
        service.tasks.append(task)
        return task

    @staticmethod
    def interface(task: Task, network: OverlayNetwork) -> Interface:
        return Interface(task.addresses[network.name], task.node.node)

    def network_inspect(self, on: SwarmNode) -> str:
        """What ``docker network inspect --verbose`` prints for every network, run on node ``on``."""
        return _dump([self._network_resource(network, on) for network in self.networks])

    def service_inspect(self) -> str:
        """What ``docker service inspect`` prints for every service."""
        return _dump([self._service(service) for service in self.services])

    def _network_resource(self, network: OverlayNetwork, on: SwarmNode) -> dict[str, Any]:
        prefix = network.subnet.prefixlen
        containers: dict[str, Any] = {}
        for task in self._tasks_on(network):
            if task.node == on:
                containers[task.container_id] = _container(
                    task.name, task.endpoint_ids[network.name], task.addresses[network.name], prefix
                )
        balancer = self.load_balancers.get((network.name, on.node.name))
        if balancer is not None:
            key, name = (
                ("ingress-sbox", "ingress-endpoint")
                if network.ingress
                else (f"lb-{network.name}", f"{network.name}-endpoint")
            )
            containers[key] = _container(name, balancer[1], balancer[0], prefix)
        peers = [
            n
            for n in self.nodes
            if any(t.node == n for t in self._tasks_on(network)) or (network.name, n.node.name) in self.load_balancers
        ]
        services = {}
        for index, service in enumerate(s for s in self.services if network.name in s.vips):
            services[service.name] = {
                "VIP": service.vips[network.name],
                "Ports": [f"Target: {t}, Publish: {p}" for t, p in service.ports] if network.ingress else [],
                "LocalLBIndex": 257 + 8 * self.networks.index(network) + index,
                "Tasks": [
                    {
                        "Name": task.name,
                        "EndpointID": task.endpoint_ids[network.name],
                        "EndpointIP": task.addresses[network.name],
                        "Info": {"Host IP": task.node.node.ip},
                    }
                    for task in service.tasks
                    if network.name in task.addresses
                ],
            }
        return {
            "Name": network.name,
            "Id": network.id,
            "Created": self.created,
            "Scope": "swarm",
            "Driver": "overlay",
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": None,
                "Config": [{"Subnet": str(network.subnet), "Gateway": str(network.subnet.network_address + 1)}],
            },
            "Internal": False,
            "Attachable": False,
            "Ingress": network.ingress,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": {VXLANID_LIST: str(network.vni), **network.options},
            "Labels": {},
            "Peers": [{"Name": n.peer_name, "IP": n.node.ip} for n in peers],
            "Services": services,
        }

    def _tasks_on(self, network: OverlayNetwork) -> list[Task]:
        return [task for service in self.services for task in service.tasks if network.name in task.addresses]

    def _service(self, service: Service) -> dict[str, Any]:
        by_name = {n.name: n for n in self.networks}
        ports = [
            {"Protocol": "tcp", "TargetPort": t, "PublishedPort": p, "PublishMode": "ingress"} for t, p in service.ports
        ]
        endpoint_spec: dict[str, Any] = {"Mode": "vip", **({"Ports": ports} if ports else {})}
        attached = [by_name[name] for name in service.vips if not by_name[name].ingress]
        short_name = service.name.removeprefix(f"{service.stack}_")
        return {
            "ID": service.id,
            "Version": {"Index": 40 + 7 * self.services.index(service)},
            "CreatedAt": self.created,
            "UpdatedAt": self.created,
            "Spec": {
                "Name": service.name,
                "Labels": {"com.docker.stack.image": service.image, STACK_NAMESPACE: service.stack},
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": service.image,
                        "Labels": {STACK_NAMESPACE: service.stack},
                        "Privileges": {"CredentialSpec": None, "SELinuxContext": None},
                        "StopGracePeriod": 10000000000,
                        "DNSConfig": {},
                        "Isolation": "default",
                    },
                    "Resources": {},
                    "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 0},
                    "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
                    "Networks": [{"Target": n.id, "Aliases": [short_name]} for n in attached],
                    "ForceUpdate": 0,
                    "Runtime": "container",
                },
                "Mode": {"Replicated": {"Replicas": len(service.tasks)}},
                "UpdateConfig": {
                    "Parallelism": 1,
                    "FailureAction": "pause",
                    "Monitor": 5000000000,
                    "MaxFailureRatio": 0,
                    "Order": "stop-first",
                },
                "RollbackConfig": {
                    "Parallelism": 1,
                    "FailureAction": "pause",
                    "Monitor": 5000000000,
                    "MaxFailureRatio": 0,
                    "Order": "stop-first",
                },
                "EndpointSpec": endpoint_spec,
            },
            "Endpoint": {
                "Spec": endpoint_spec,
                **({"Ports": ports} if ports else {}),
                "VirtualIPs": [
                    {"NetworkID": by_name[name].id, "Addr": f"{ip}/{by_name[name].subnet.prefixlen}"}
                    for name, ip in service.vips.items()
                ],
            },
        }


def _container(name: str, endpoint_id: str, ip: str, prefix: int) -> dict[str, str]:
    return {
        "Name": name,
        "EndpointID": endpoint_id,
        "MacAddress": ":".join(f"{b:02x}" for b in docker_mac(ip)),
        "IPv4Address": f"{ip}/{prefix}",
        "IPv6Address": "",
    }


def _dump(document: list[dict[str, Any]]) -> str:
    """JSON as the Docker CLI prints it: indented by four spaces, with a final newline."""
    return json.dumps(document, indent=4) + "\n"
