"""Docker Swarm metadata: which VNI is which network, which inner IP is which service, which node is which IP.

Reads what ``docker network inspect --verbose NET...`` and ``docker service
inspect SVC...`` print: a JSON array of objects (a single object is accepted
too). Network objects give the VNIs (``Options`` key
``com.docker.network.driver.overlay.vxlanid_list``), the subnets, whether the
network is declared encrypted, the peer nodes (``Peers``) and, with
``--verbose``, each service's VIP and tasks (``Services``). Service objects
give each service's VIP per network (``Endpoint.VirtualIPs``).

Docker encrypts a network when the option key ``encrypted`` is present,
whatever its value; a key that merely looks like it (``encrypt``,
``Encrypted``, ``encryption``, ...) is silently ignored by Docker, so it
yields a warning here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .well_known import well_known_service

__all__ = [
    "EMPTY_TOPOLOGY",
    "Endpoint",
    "Network",
    "Topology",
    "TopologyError",
    "load_topology",
    "well_known_service",
]

VXLANID_LIST = "com.docker.network.driver.overlay.vxlanid_list"
ENCRYPTED = "encrypted"
MAX_FILE_BYTES = 64 << 20
"""Inspect output of even a large cluster is a few MiB; a larger file is not one."""

_ABSENT_IPS = ("", "<nil>")
_MAX_VNI = (1 << 24) - 1
_SLOT = re.compile(r"[0-9a-z]+")
_SWARM_ID = re.compile(r"[0-9a-z]{25}")
_FALSE_WORDS = ("false", "0", "no", "off")


class TopologyError(Exception):
    """Docker metadata that cannot be read: which file, and why (one line)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Network:
    """One Docker network as ``docker network inspect`` describes it."""

    id: str
    name: str
    vnis: tuple[int, ...]
    subnets: tuple[str, ...]  # normalised CIDRs, e.g. "10.0.1.0/24"
    declared_encrypted: bool  # the option key "encrypted" is present
    ingress: bool
    scope: str
    driver: str


@dataclass(frozen=True)
class Endpoint:
    """An inner IP address and the service it belongs to."""

    ip: str  # normalised, no prefix
    service: str
    task: str | None  # task name; None for a VIP
    network: str  # network name (its ID when the name is unknown)
    is_vip: bool
    node: str | None  # name of the node the task runs on (its underlay IP when no name is known)


@dataclass(frozen=True)
class Topology:
    """Networks, nodes and endpoints learnt from Docker metadata; combine two with ``+``."""

    networks: tuple[Network, ...]
    nodes: Mapping[str, str]  # underlay IP -> node name
    endpoints: tuple[Endpoint, ...]
    warnings: tuple[str, ...]
    _by_network_ip: dict[tuple[str, str], Endpoint] = field(init=False, repr=False, compare=False)
    _by_ip: dict[str, Endpoint] = field(init=False, repr=False, compare=False)
    _by_vni: dict[int, Network] = field(init=False, repr=False, compare=False)
    _by_name_or_id: dict[str, Network] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "networks", tuple(self.networks))
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        by_network_ip: dict[tuple[str, str], Endpoint] = {}
        by_ip: dict[str, Endpoint] = {}
        for endpoint in self.endpoints:
            by_network_ip.setdefault((endpoint.network, endpoint.ip), endpoint)
            by_ip.setdefault(endpoint.ip, endpoint)
        object.__setattr__(self, "_by_network_ip", by_network_ip)
        object.__setattr__(self, "_by_ip", by_ip)
        by_vni: dict[int, Network] = {}
        by_name_or_id: dict[str, Network] = {}
        for network in self.networks:  # the first network that claims a VNI, name or ID keeps it
            for vni in network.vnis:
                by_vni.setdefault(vni, network)
            for key in (network.name, network.id):
                by_name_or_id.setdefault(key, network)
        object.__setattr__(self, "_by_vni", by_vni)
        object.__setattr__(self, "_by_name_or_id", by_name_or_id)

    def __reduce__(self) -> tuple:
        """Pickle by value, so a Topology travels to worker processes."""
        return (Topology, (self.networks, dict(self.nodes), self.endpoints, self.warnings))

    def network_by_vni(self, vni: int) -> Network | None:
        """The network that owns VXLAN ``vni``."""
        return self._by_vni.get(vni)

    def network_named(self, name_or_id: str) -> Network | None:
        """The network with this name, ID, or unambiguous ID prefix (as the Docker CLI accepts)."""
        if not name_or_id:
            return None
        if name_or_id in self._by_name_or_id:
            return self._by_name_or_id[name_or_id]
        matches = [n for n in self.networks if n.id.startswith(name_or_id)]
        return matches[0] if len(matches) == 1 else None

    def endpoint(self, network: str | None, ip: str) -> Endpoint | None:
        """The endpoint with inner address ``ip`` on the named network (any network if None)."""
        address = _normalise_ip(ip)
        if address is None:
            return None
        if network is None:
            return self._by_ip.get(address)
        known = self.network_named(network)
        return self._by_network_ip.get((known.name if known else network, address))

    def node_name(self, ip: str) -> str | None:
        """The name of the node whose underlay address is ``ip``."""
        address = _normalise_ip(ip)
        return None if address is None else self.nodes.get(address)

    def __add__(self, other: object) -> Topology:
        if not isinstance(other, Topology):
            return NotImplemented
        return _assemble(
            self.networks + other.networks,
            {**other.nodes, **self.nodes},
            self.endpoints + other.endpoints,
            self.warnings + other.warnings,
        )


EMPTY_TOPOLOGY = Topology((), {}, (), ())


def load_topology(paths: Iterable[str | os.PathLike[str]]) -> Topology:
    """Read Docker inspect JSON from files, or from every ``*.json`` file of a directory.

    Raises ``TopologyError`` naming the file for JSON that cannot be read or
    does not have the shape of Docker's output.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    topology = EMPTY_TOPOLOGY
    for path in paths:
        for file in _json_files(Path(path)):
            topology = topology + _load_file(file)
    return topology


def _json_files(path: Path) -> list[Path]:
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        except OSError as error:
            raise TopologyError(path, error.strerror or str(error)) from None
        if not files:
            raise TopologyError(path, "no *.json file in this directory")
        return files
    return [path]


def _load_file(path: Path) -> Topology:
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise TopologyError(path, error.strerror or str(error)) from None
    if len(data) > MAX_FILE_BYTES:
        raise TopologyError(path, f"larger than {MAX_FILE_BYTES} bytes: not Docker inspect output")
    document = _parse_json(path, data)
    if not isinstance(document, (list, dict)):
        raise TopologyError(path, f"top level is {_kind(document)}; expected the array docker inspect prints")
    networks: list[Network] = []
    nodes: dict[str, str] = {}
    endpoints: list[Endpoint] = []
    warnings: list[str] = []
    for index, item in enumerate(document if isinstance(document, list) else [document]):
        try:
            part = _read_item(item)
        except _ShapeError as error:
            raise TopologyError(path, f"item {index}: {error}") from None
        except _NotInspectOutput:
            warnings.append(f"{path}: item {index} is not a docker network or service inspect object; ignored")
            continue
        networks += part.networks
        for ip, name in part.nodes.items():
            nodes.setdefault(ip, name)
        endpoints += part.endpoints
        warnings += part.warnings
    return _assemble(networks, nodes, endpoints, warnings)


def _parse_json(path: Path, data: bytes) -> Any:
    encoding = json.detect_encoding(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise TopologyError(path, f"not {encoding} text at byte {error.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        offset = len(text[: error.pos].encode(encoding))
        raise TopologyError(
            path, f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno} (byte {offset})"
        ) from None
    except ValueError as error:  # an integer too long to convert
        raise TopologyError(path, f"not usable JSON: {str(error).split(':')[0]}") from None
    except RecursionError:
        raise TopologyError(path, "JSON nested too deeply") from None


class _ShapeError(Exception):
    """A field of a Docker object has the wrong type or an impossible value."""


class _NotInspectOutput(Exception):
    """A JSON object that is neither a network nor a service."""


def _read_item(item: Any) -> Topology:
    if not isinstance(item, dict):
        raise _ShapeError(f"is {_kind(item)}, not an object")
    spec = item.get("Spec")
    if isinstance(spec, dict) and ("Endpoint" in item or "TaskTemplate" in spec):
        return _read_service(item, spec)
    if ("Name" in item or "Id" in item) and any(key in item for key in ("IPAM", "Driver", "Peers", "Services")):
        return _read_network(item)
    raise _NotInspectOutput


def _read_network(item: dict[str, Any]) -> Topology:
    name = _get(item, "Name", str, "", "network")
    network_id = _get(item, "Id", str, "", "network")
    label = name or network_id
    where = f"network {_quote(label)}"
    options = _string_map(_get(item, "Options", dict, {}, where), f"{where} Options")
    warnings = _option_warnings(label, options)
    ipam = _get(item, "IPAM", dict, {}, where)
    subnets = []
    for config in _get(ipam, "Config", list, [], f"{where} IPAM"):
        subnet = _get(_object(config, f"{where} IPAM.Config"), "Subnet", str, "", f"{where} IPAM.Config")
        if subnet:
            subnets.append(_normalise_subnet(subnet, where))
    ingress = _get(item, "Ingress", bool, name == "ingress", where)
    network = Network(
        id=network_id,
        name=label,
        vnis=_vnis(options.get(VXLANID_LIST, ""), where),
        subnets=tuple(subnets),
        declared_encrypted=ENCRYPTED in options,
        ingress=ingress,
        scope=_get(item, "Scope", str, "", where),
        driver=_get(item, "Driver", str, "", where),
    )
    nodes = {}
    for peer in _get(item, "Peers", list, [], where):
        peer = _object(peer, f"{where} Peers")
        ip = _ip(_get(peer, "IP", str, "", f"{where} peer"), f"{where} peer IP")
        if ip is not None:
            nodes[ip] = _get(peer, "Name", str, "", f"{where} peer") or ip
    endpoints = _container_endpoints(item, label, where) + _service_endpoints(item, label, where)
    return Topology((network,), nodes, endpoints, warnings)


def _container_endpoints(item: dict[str, Any], network: str, where: str) -> list[Endpoint]:
    endpoints = []
    for container in _get(item, "Containers", dict, {}, where).values():
        container = _object(container, f"{where} Containers")
        name = _get(container, "Name", str, "", f"{where} container")
        for key in ("IPv4Address", "IPv6Address"):
            ip = _ip(_get(container, key, str, "", f"{where} container {_quote(name)}"), f"{where} container {key}")
            if ip is not None:
                endpoints.append(Endpoint(ip, _service_of_task(name), name or None, network, False, None))
    return endpoints


def _service_endpoints(item: dict[str, Any], network: str, where: str) -> list[Endpoint]:
    endpoints = []
    for service, info in _get(item, "Services", dict, {}, where).items():
        here = f"{where} service {_quote(service)}"
        info = _object(info, here)
        vip = _ip(_get(info, "VIP", str, "", here), f"{here} VIP")
        if vip is not None and service:
            endpoints.append(Endpoint(vip, service, None, network, True, None))
        for task in _get(info, "Tasks", list, [], here):
            task = _object(task, f"{here} Tasks")
            task_name = _get(task, "Name", str, "", f"{here} task")
            at = f"{where} task {_quote(task_name)}"
            ip = _ip(_get(task, "EndpointIP", str, "", at), f"{at} EndpointIP")
            host = _get(_get(task, "Info", dict, {}, at), "Host IP", str, "", f"{at} Info")
            node = _ip(host, f"{at} Host IP")
            if ip is not None:
                endpoints.append(Endpoint(ip, service or task_name, task_name or None, network, False, node))
    return endpoints


def _read_service(item: dict[str, Any], spec: dict[str, Any]) -> Topology:
    name = _get(spec, "Name", str, "", "service Spec") or _get(item, "ID", str, "", "service")
    where = f"service {_quote(name)}"
    endpoint = _get(item, "Endpoint", dict, {}, where)
    endpoints = []
    for vip in _get(endpoint, "VirtualIPs", list, [], f"{where} Endpoint"):
        vip = _object(vip, f"{where} Endpoint.VirtualIPs")
        ip = _ip(_get(vip, "Addr", str, "", f"{where} VirtualIPs"), f"{where} VirtualIPs Addr")
        network = _get(vip, "NetworkID", str, "", f"{where} VirtualIPs")
        if ip is not None:
            endpoints.append(Endpoint(ip, name, None, network, True, None))
    return Topology((), {}, endpoints, ())


def _service_of_task(name: str) -> str:
    """``app1_web`` from a task's container name ``app1_web.1.<task ID>``; other names as they are."""
    parts = name.rsplit(".", 2)
    if len(parts) == 3 and parts[0] and _SLOT.fullmatch(parts[1]) and _SWARM_ID.fullmatch(parts[2]):
        return parts[0]
    return name


def _assemble(
    networks: Iterable[Network], nodes: Mapping[str, str], endpoints: Iterable[Endpoint], warnings: Iterable[str]
) -> Topology:
    """Merge networks that are one, name endpoints' networks and nodes, drop duplicates."""
    merged: dict[str, Network] = {}
    for network in networks:
        key = network.id or network.name
        merged[key] = _merge_networks(merged[key], network) if key in merged else network
    names_by_id = {n.id: n.name for n in merged.values() if n.id}
    best: dict[tuple[str, str, bool], Endpoint] = {}
    for endpoint in endpoints:
        network = names_by_id.get(endpoint.network, endpoint.network)
        node = nodes.get(endpoint.node, endpoint.node) if endpoint.node is not None else None
        endpoint = Endpoint(endpoint.ip, endpoint.service, endpoint.task, network, endpoint.is_vip, node)
        key = (network, endpoint.ip, endpoint.is_vip)
        if key not in best or _detail(endpoint) > _detail(best[key]):
            best[key] = endpoint
    return Topology(tuple(merged.values()), nodes, tuple(best.values()), tuple(dict.fromkeys(warnings)))


def _merge_networks(first: Network, second: Network) -> Network:
    return Network(
        id=first.id or second.id,
        name=first.name or second.name,
        vnis=tuple(dict.fromkeys(first.vnis + second.vnis)),
        subnets=tuple(dict.fromkeys(first.subnets + second.subnets)),
        declared_encrypted=first.declared_encrypted or second.declared_encrypted,
        ingress=first.ingress or second.ingress,
        scope=first.scope or second.scope,
        driver=first.driver or second.driver,
    )


def _detail(endpoint: Endpoint) -> int:
    return (endpoint.task is not None) + (endpoint.node is not None)


def _option_warnings(network: str, options: Mapping[str, str]) -> tuple[str, ...]:
    warnings = []
    for key, value in options.items():
        if key == ENCRYPTED:
            if value.strip().lower() in _FALSE_WORDS:
                warnings.append(
                    f"network {_quote(network)}: option 'encrypted={value}' still encrypts the network: "
                    "Docker only checks that the key 'encrypted' is present"
                )
        elif _looks_like_encrypted(key):
            consequence = "" if ENCRYPTED in options else "; the network is not encrypted"
            warnings.append(
                f"network {_quote(network)}: option key {_quote(key)} is not 'encrypted' "
                f"and Docker ignores it{consequence}"
            )
    return tuple(warnings)


def _looks_like_encrypted(key: str) -> bool:
    folded = key.strip().lower()
    if "crypt" in folded or folded in ("secure", "ipsec"):
        return True
    # A ratio of 0.75 needs 2 * matches / (len(key) + 9) >= 0.75 with at most 9 matches: len(key) <= 15.
    return len(folded) <= 15 and SequenceMatcher(None, folded, ENCRYPTED).ratio() >= 0.75


def _vnis(text: str, where: str) -> tuple[int, ...]:
    vnis = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit() and len(part) <= 8 and 1 <= int(part) <= _MAX_VNI):
            raise _ShapeError(f"{where}: {VXLANID_LIST} {_quote(text)} is not a list of VNIs (1-{_MAX_VNI})")
        vnis.append(int(part))
    return tuple(vnis)


def _normalise_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_interface(text.strip()).ip)
    except ValueError:
        return None


def _ip(text: str, where: str) -> str | None:
    """The address in ``text`` (a prefix length is dropped); None for Docker's empty values."""
    if text.strip() in _ABSENT_IPS:
        return None
    address = _normalise_ip(text)
    if address is None:
        raise _ShapeError(f"{where}: {_quote(text)} is not an IP address")
    return address


def _normalise_subnet(text: str, where: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise _ShapeError(f"{where}: subnet {_quote(text)} is not a CIDR") from None


def _get(obj: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    """``obj[key]`` checked to be of ``kind``; ``default`` when absent or null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _ShapeError(f"{where}: {key} is {_kind(value)}, expected {_KIND_NAMES[kind]}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _ShapeError(f"{where}: an entry is {_kind(value)}, expected an object")
    return value


def _string_map(value: dict[str, Any], where: str) -> dict[str, str]:
    for key, item in value.items():
        if not isinstance(item, str):
            raise _ShapeError(f"{where}: {_quote(key)} is {_kind(item)}, expected a string")
    return value


_KIND_NAMES = {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _quote(text: str, limit: int = 64) -> str:
    """``text`` quoted for a one-line message, cut short when long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
