"""Names of the services that usually listen on a port, for labelling servers without metadata."""

from __future__ import annotations

_BOTH = ("tcp", "udp")

_SERVICES: dict[tuple[int, str], str] = {}


def _register(name: str, ports: tuple[int, ...], transports: tuple[str, ...] = ("tcp",)) -> None:
    for port in ports:
        for transport in transports:
            _SERVICES[(port, transport)] = name


_register("ftp", (21,))
_register("ssh", (22,))
_register("telnet", (23,))
_register("smtp", (25, 587))
_register("dns", (53,), _BOTH)
_register("http", (80, 3000, 5000, 8000, 8008, 8080, 8888))
_register("pop3", (110,))
_register("ntp", (123,), ("udp",))
_register("imap", (143,))
_register("snmp", (161,), ("udp",))
_register("ldap", (389,))
_register("https", (443, 8443))
_register("smb", (445,))
_register("isakmp", (500,), ("udp",))
_register("syslog", (514,), ("udp",))
_register("ldaps", (636,))
_register("imaps", (993,))
_register("pop3s", (995,))
_register("mssql", (1433,))
_register("oracle", (1521,))
_register("mqtt", (1883,))
_register("docker", (2375,))
_register("docker-tls", (2376,))
_register("swarm", (2377,))
_register("etcd", (2379, 2380))
_register("mysql", (3306,))
_register("nats", (4222,))
_register("ipsec-nat-t", (4500,), ("udp",))
_register("vxlan", (4789, 8472), ("udp",))
_register("postgres", (5432,))
_register("amqp", (5672,))
_register("couchdb", (5984,))
_register("geneve", (6081,), ("udp",))
_register("redis", (6379,))
_register("kubernetes-api", (6443,))
_register("swarm-gossip", (7946,), _BOTH)
_register("influxdb", (8086,))
_register("cassandra", (9042,))
_register("prometheus", (9090,))
_register("kafka", (9092,))
_register("elasticsearch", (9200, 9300))
_register("memcached", (11211,), _BOTH)
_register("rabbitmq-management", (15672,))
_register("mongodb", (27017,))


def well_known_service(port: int, transport: str = "tcp") -> str | None:
    """The service usually found on ``port`` over ``transport`` (``"tcp"`` or ``"udp"``), or None.

    >>> well_known_service(6379)
    'redis'
    >>> well_known_service(53, "udp")
    'dns'
    """
    return _SERVICES.get((port, transport.lower()))


def known_ports(transport: str) -> frozenset[int]:
    """The ports ``well_known_service`` names a service for over ``transport``."""
    transport = transport.lower()
    return frozenset(port for port, over in _SERVICES if over == transport)
