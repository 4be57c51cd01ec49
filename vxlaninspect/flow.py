"""A flow as a value: one conversation's counts, with the roles, protocol and service derived from them.

``FlowColumns`` (``flow_columns``) holds a Report's flows as columns and
renders ``Flow`` values from them when they are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .schema import AppHint
from .well_known import well_known_service

TRANSPORTS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
PORTED_TRANSPORTS = frozenset({"tcp", "udp", "sctp"})

PROTOCOL_BY_HINT = (
    ("http", (AppHint.HTTP_REQUEST, AppHint.HTTP_RESPONSE)),
    ("resp", (AppHint.RESP_COMMAND,)),
    ("ssh", (AppHint.SSH,)),
    ("tls", (AppHint.TLS,)),
    ("text", (AppHint.TEXT, AppHint.RESP_REPLY)),
    ("binary", (AppHint.BINARY,)),
)
"""The protocol a flow's application hints name, strongest first. A RESP reply alone
(``+...``, ``-...``) is too weak a sign of Redis: it counts as text."""


def transport_name(proto: int) -> str:
    """``"tcp"``, ``"udp"``, ``"icmp"``, ... or ``"ip-<number>"``."""
    return TRANSPORTS.get(proto, f"ip-{proto}")


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _protocol_of_hints(hints: int) -> str | None:
    for name, members in PROTOCOL_BY_HINT:
        if any(hints & (1 << int(member)) for member in members):
            return name
    return None


PROTOCOL_OF_HINTS = tuple(_protocol_of_hints(bits) for bits in range(1 << (max(AppHint) + 1)))
"""The protocol each bit set of ``AppHint`` values names (see ``PROTOCOL_BY_HINT``), None without payload."""


def protocol_of_hints(hints: int) -> str | None:
    """The protocol a bit set of ``AppHint`` values names (see ``PROTOCOL_BY_HINT``), or None without payload."""
    return PROTOCOL_OF_HINTS[hints]


def protocol_rank(protocol: str | None) -> tuple[int, str]:
    """Orders protocols strongest first: those of ``PROTOCOL_BY_HINT`` in its order, then others by name, None last."""
    if protocol is None:
        return (len(PROTOCOL_BY_HINT) + 1, "")
    return (next((k for k, (name, _) in enumerate(PROTOCOL_BY_HINT) if name == protocol), len(PROTOCOL_BY_HINT)), protocol)


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow, as counted: pairs are indexed by side (0 for ``a``, 1 for ``b``).

    ``a`` and ``b`` are the endpoints in canonical order (``a`` sorts first);
    ``sent_*[0]`` is what ``a`` sent to ``b``. Roles, protocol and totals are
    derived from these counts, so counts of the same flow add up
    (``FlowColumns``) to the count of the whole whatever the split.
    """

    vni: int | None
    underlay: tuple[str, str] | None  # the node pair's underlay addresses, None outside an overlay
    transport: str
    a: str
    b: str
    first_ts: int
    last_ts: int
    sent_packets: tuple[int, int]
    sent_bytes: tuple[int, int]  # frame bytes on the wire
    sent_payload: tuple[int, int]  # TCP/UDP payload bytes the headers claim
    syn_ts: tuple[int | None, int | None]  # first SYN (without ACK) each side sent
    synack: tuple[bool, bool]  # whether each side sent a SYN-ACK
    hints: tuple[int, int]  # bit (1 << AppHint) for each hint seen from each side
    names: tuple[str | None, None | str] = (None, None)  # service of each side's address, from metadata
    inspected: str | None = None  # protocol the inspection stage identified

    client_side: int = field(init=False, repr=False, compare=False)
    """0 when ``a`` is the client, 1 when ``b`` is.

    The first SYN's sender is the client; else the SYN-ACK's receiver; else the
    side whose port is a well-known service's, or failing that the lower port,
    is the server.
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_side", self._client_side())

    def _client_side(self) -> int:
        syn_a, syn_b = self.syn_ts
        if syn_a is not None or syn_b is not None:
            return 0 if syn_b is None or (syn_a is not None and syn_a <= syn_b) else 1
        if self.synack[0] != self.synack[1]:
            return 1 if self.synack[0] else 0
        if self.transport in PORTED_TRANSPORTS:
            port_a, port_b = _port(self.a), _port(self.b)
            known_a = well_known_service(port_a, self.transport) is not None
            known_b = well_known_service(port_b, self.transport) is not None
            if known_a != known_b:
                return 1 if known_a else 0
            if port_a != port_b:
                return 1 if port_a < port_b else 0
        return 0

    @property
    def key(self) -> tuple:
        """What identifies the flow: equal keys are the same flow."""
        return (self.vni, self.underlay, self.transport, self.a, self.b)

    def _side(self, client: bool) -> int:
        c = self.client_side
        return c if client else 1 - c

    @property
    def client(self) -> str:
        return (self.a, self.b)[self._side(True)]

    @property
    def server(self) -> str:
        return (self.a, self.b)[self._side(False)]

    @property
    def client_packets(self) -> int:
        return self.sent_packets[self._side(True)]

    @property
    def server_packets(self) -> int:
        return self.sent_packets[self._side(False)]

    @property
    def client_bytes(self) -> int:
        return self.sent_bytes[self._side(True)]

    @property
    def server_bytes(self) -> int:
        return self.sent_bytes[self._side(False)]

    @property
    def client_payload_bytes(self) -> int:
        return self.sent_payload[self._side(True)]

    @property
    def server_payload_bytes(self) -> int:
        return self.sent_payload[self._side(False)]

    @property
    def packets(self) -> int:
        return self.sent_packets[0] + self.sent_packets[1]

    @property
    def bytes(self) -> int:
        return self.sent_bytes[0] + self.sent_bytes[1]

    @property
    def payload_bytes(self) -> int:
        return self.sent_payload[0] + self.sent_payload[1]

    @property
    def handshake(self) -> bool:
        """Whether a SYN and the SYN-ACK answering it were both seen."""
        return (self.syn_ts[0] is not None and self.synack[1]) or (self.syn_ts[1] is not None and self.synack[0])

    @property
    def protocol(self) -> str | None:
        """The inspected protocol, else the one the application hints name; None without payload."""
        return self.inspected or protocol_of_hints(self.hints[0] | self.hints[1])

    @property
    def server_port(self) -> int | None:
        return _port(self.server) if self.transport in PORTED_TRANSPORTS else None

    @property
    def service(self) -> str | None:
        """The server's service: from metadata, else the well-known service of its port."""
        name = self.names[self._side(False)]
        if name is None and self.transport in PORTED_TRANSPORTS:
            name = well_known_service(_port(self.server), self.transport)
        return name


Namer = Callable[[int | None, str], str | None]
"""Names the service of an address (text) in a VNI (None outside overlays), or None."""
