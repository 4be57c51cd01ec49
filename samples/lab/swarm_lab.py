"""Build a two-node Docker-Swarm-like VXLAN overlay in network namespaces, run real services
on it, and capture the underlay.

Two node namespaces (host01 172.17.0.71, host02 172.17.0.74) share an underlay veth
pair. As Docker does, each node has one namespace per overlay network holding a bridge
``br0``, the network's kernel VXLAN device and the veths to the containers, with static
ARP and FDB entries for the remote endpoints. Networks: ``ingress`` (VNI 4096,
10.0.0.0/24) and ``app`` (VNI 4097, 10.0.1.0/24). Services: ``redis`` (a real
redis-server with a password, on host01) and ``web`` (an HTTP service on port 3000, on
host02, that counts visits in Redis over RESP). Host01's ingress sandbox curls the web
service over the ingress network, and ``redis-cli -a`` from the web task sends an AUTH
across the app network, while tcpdump records host01's underlay interface.

The overlay is cleartext only: the lab makes no IPsec ESP traffic, since the kernel it
is developed on offers no xfrm ESP transform to reproduce Docker's ``--opt encrypted``.

Writes OUT/capture.pcap and OUT/network-inspect.json (the networks as
``docker network inspect --verbose`` shows them on host01). Needs root, iproute2,
tcpdump, redis-server, redis-tools and curl. Every namespace is named
``vxi-<pid>-...`` and deleted on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType

from docker_inspect import network_inspect
from netns import Deadline, LabError, Namespaces, existing_namespaces
from swarm import CAPTURE_NODE, MTU, SWARM, Swarm

TOOLS = {
    "ip": "iproute2", "bridge": "iproute2", "tcpdump": "tcpdump",
    "redis-server": "redis-server", "redis-cli": "redis-tools", "curl": "curl",
}
"""Each program the lab runs, and the Debian package that installs it."""
WEBAPP = Path(__file__).with_name("webapp.py")
UNDERLAY_PREFIX = 16


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def check_prerequisites() -> None:
    """``LabError`` naming every missing prerequisite and the apt packages that provide them."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root: it creates network namespaces")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOLS[tool] for tool in missing}))
        problems.append(f"missing {', '.join(missing)}: apt-get install {packages}")
    if problems:
        raise LabError("; ".join(problems))


def build(ns: Namespaces, swarm: Swarm, vxlan_port: int) -> dict[str, str]:
    """Create every namespace, interface, address and static neighbour; return the namespace of each node and sandbox."""
    names = {node.name: ns.add(node.name) for node in swarm.nodes}
    first, second = swarm.nodes
    ns.ip(names[first.name], "link", "add", "eth0", "address", first.mac, "type", "veth",
          "peer", "name", "eth0", "address", second.mac, "netns", names[second.name])
    for node in swarm.nodes:
        ns.ip(names[node.name], "addr", "add", f"{node.ip}/{UNDERLAY_PREFIX}", "dev", "eth0")
        ns.ip(names[node.name], "link", "set", "eth0", "up")

    overlay = {}
    for network in swarm.networks:
        for node in swarm.nodes_on(network):
            name = overlay[node, network] = ns.add(f"{node.name}-net-{network.name}")
            ns.ip(name, "link", "add", "br0", "mtu", str(MTU), "type", "bridge")
            ns.ip(names[node.name], "link", "add", network.vxlan_name, "mtu", str(MTU), "type", "vxlan",
                  "id", str(network.vni), "dstport", str(vxlan_port), "proxy", "l2miss", "l3miss")
            ns.ip(names[node.name], "link", "set", network.vxlan_name, "netns", name)
            ns.ip(name, "link", "set", network.vxlan_name, "master", "br0", "up")
            ns.ip(name, "link", "set", "br0", "up")

    for sandbox in swarm.sandboxes:
        name = names[sandbox.name] = ns.add(f"{sandbox.node.name}-{sandbox.name}")
        veth = f"veth{sandbox.container_id[:7]}"
        for endpoint in sandbox.endpoints:
            bridge_ns = overlay[sandbox.node, endpoint.network]
            ns.ip(bridge_ns, "link", "add", veth, "mtu", str(MTU), "type", "veth", "peer", "name",
                  endpoint.interface, "mtu", str(MTU), "address", endpoint.mac, "netns", name)
            ns.ip(bridge_ns, "link", "set", veth, "master", "br0", "up")
            ns.ip(name, "addr", "add", f"{endpoint.ip}/{endpoint.network.subnet.prefixlen}", "dev", endpoint.interface)
            ns.ip(name, "link", "set", endpoint.interface, "up")

    for (node, network), bridge_ns in overlay.items():
        for sandbox, endpoint in swarm.members(network):
            if sandbox.node == node:
                continue
            ns.ip(bridge_ns, "neigh", "add", str(endpoint.ip), "lladdr", endpoint.mac,
                  "dev", network.vxlan_name, "nud", "permanent")
            ns.bridge(bridge_ns, "fdb", "add", endpoint.mac, "dev", network.vxlan_name,
                      "dst", str(sandbox.node.ip), "self", "permanent")
    return names


def task_ip(swarm: Swarm, sandbox: str, network: str) -> IPv4Address:
    endpoint = swarm.sandbox(sandbox).endpoint_on(swarm.network(network))
    assert endpoint is not None, f"{sandbox} is not on {network}"
    return endpoint.ip


def run_lab(ns: Namespaces, swarm: Swarm, vxlan_port: int, requests: int, password: str) -> Path:
    """Build the overlay, start the services, capture while the clients talk; return the capture's path."""
    names = build(ns, swarm, vxlan_port)
    redis_ip = task_ip(swarm, "redis.1", "app")
    web_ip = task_ip(swarm, "web.1", "ingress")
    client_ip = task_ip(swarm, "ingress-sbox", "ingress")

    redis_config = f'port 6379\nbind 0.0.0.0\nprotected-mode no\nrequirepass {password}\nsave ""\ndir {ns.logs}\n'
    redis = ns.spawn("redis", names["redis.1"], ["redis-server", "-"], stdin=redis_config.encode())
    ns.wait_for(redis, "Ready to accept connections")
    web = ns.spawn("web", names["web.1"], [sys.executable, str(WEBAPP), "--port", "3000", "--redis", f"{redis_ip}:6379"],
                   env={"REDIS_PASSWORD": password})
    ns.wait_for(web, "web listening")

    capture = ns.logs / "capture.pcap"
    tcpdump = ns.spawn("tcpdump", names[CAPTURE_NODE.name],
                       ["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", str(capture)])
    ns.wait_for(tcpdump, "listening on eth0")

    for visit in range(1, requests + 1):
        page = ns.execute(names["ingress-sbox"], ["curl", "-sS", "--max-time", "5", f"http://{web_ip}:3000/"])
        if f"visits: {visit}<" not in page:
            raise LabError(f"request {visit} to the web service got an unexpected page: {page[:200]!r}")
    tally = ns.execute(names["web.1"], ["redis-cli", "-h", str(redis_ip), "-a", password, "--no-auth-warning",
                                        "HGETALL", "ip"])
    if tally.split() != [str(client_ip), str(requests)]:
        raise LabError(f"redis-cli HGETALL ip gave {tally!r}")

    time.sleep(0.2)  # the last FIN and ACK reach the wire
    ns.stop(tcpdump, signal.SIGINT)
    ns.poll("tcpdump to report its count", lambda: "packets captured" in tcpdump.log.read_text(), 5.0)
    return capture


def _bounded(low: float, high: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` within ``low``-``high``."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}-{high}")
        return value
    return parse


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="directory for capture.pcap and network-inspect.json (created if absent)")
    parser.add_argument("--port", type=_bounded(1, 65535), default=4789,
                        help="VXLAN UDP destination port (default 4789; Linux and flannel use 8472)")
    parser.add_argument("--requests", type=_bounded(1, 1000), default=5, metavar="N",
                        help="HTTP requests the client makes (default 5)")
    parser.add_argument("--password", default="swarm-lab-s3cret", help="the Redis password (default %(default)s)")
    parser.add_argument("--timeout", type=_bounded(0.01, 3600, float), default=60.0, metavar="SECONDS",
                        help="bound on set-up and traffic; clean-up has bounds of its own (default 60)")
    return parser.parse_args(argv)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    prefix = f"vxi-{os.getpid()}"
    try:
        check_prerequisites()
        stale = [name for name in existing_namespaces() if name.startswith(f"{prefix}-")]
        if stale:
            raise LabError(f"namespaces from an earlier run with this process id exist: {' '.join(stale)}")
    except LabError as error:
        print(f"swarm_lab: error: {error}", file=sys.stderr)
        return 1

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    status = 0
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as work:
        ns = Namespaces(prefix, Path(work), Deadline.after(args.timeout))
        try:
            capture = run_lab(ns, SWARM, args.port, args.requests, args.password)
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.move(capture, args.out / "capture.pcap")
            created = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            inspect = json.dumps(network_inspect(SWARM, CAPTURE_NODE, created), indent=4)
            (args.out / "network-inspect.json").write_text(inspect + "\n")
        except (LabError, OSError) as error:
            print(f"swarm_lab: error: {error}", file=sys.stderr)
            status = 1
        except (KeyboardInterrupt, Interrupted) as error:
            signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
            print(f"swarm_lab: interrupted by {signal.Signals(signum).name}; cleaning up", file=sys.stderr)
            status = 128 + signum
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            for problem in ns.teardown():
                print(f"swarm_lab: clean-up: {problem}", file=sys.stderr)
                status = status or 1
    if status == 0:
        size = (args.out / "capture.pcap").stat().st_size
        print(f"wrote {args.out / 'capture.pcap'} ({size} bytes) and {args.out / 'network-inspect.json'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
