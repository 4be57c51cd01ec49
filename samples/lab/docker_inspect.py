"""The lab's networks as ``docker network inspect --verbose`` prints them on one node."""

from __future__ import annotations

from typing import Any

from swarm import Network, Node, Swarm


def _containers(swarm: Swarm, network: Network, node: Node) -> dict[str, Any]:
    containers: dict[str, Any] = {}
    for sandbox, endpoint in swarm.members(network):
        if sandbox.node != node:
            continue
        key = sandbox.container_id if sandbox.service else sandbox.name
        containers[key] = {
            "Name": sandbox.task_name if sandbox.service else f"{network.name}-endpoint",
            "EndpointID": sandbox.endpoint_id(endpoint),
            "MacAddress": endpoint.mac,
            "IPv4Address": f"{endpoint.ip}/{network.subnet.prefixlen}",
            "IPv6Address": "",
        }
    return containers


def _services(swarm: Swarm, network: Network) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for number, service in enumerate(swarm.services):
        vip = dict(service.vips).get(network)
        if vip is None:
            continue
        tasks = [
            {
                "Name": sandbox.task_name,
                "EndpointID": sandbox.endpoint_id(endpoint),
                "EndpointIP": str(endpoint.ip),
                "Info": {"Host IP": str(sandbox.node.ip)},
            }
            for sandbox, endpoint in swarm.members(network)
            if sandbox.service == service.name
        ]
        ports = [f"Target: {service.port}, Publish: {service.port}"] if network.ingress and service.published else []
        services[service.name] = {
            "VIP": str(vip),
            "Ports": ports,
            "LocalLBIndex": 256 + swarm.networks.index(network) * len(swarm.services) + number,
            "Tasks": tasks,
        }
    return services


def network_inspect(swarm: Swarm, node: Node, created: str) -> list[dict[str, Any]]:
    """Every network of ``swarm`` as ``docker network inspect --verbose`` shows it on ``node``.

    ``created`` is the RFC 3339 time stamp given as each network's creation time.
    """
    return [
        {
            "Name": network.name,
            "Id": network.id,
            "Created": created,
            "Scope": "swarm",
            "Driver": "overlay",
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": None,
                "Config": [{"Subnet": str(network.subnet), "Gateway": str(network.gateway)}],
            },
            "Internal": False,
            "Attachable": False,
            "Ingress": network.ingress,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": _containers(swarm, network, node),
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(network.vni)},
            "Labels": {},
            "Peers": [{"Name": peer.name, "IP": str(peer.ip)} for peer in swarm.nodes_on(network)],
            "Services": _services(swarm, network),
        }
        for network in swarm.networks
    ]
