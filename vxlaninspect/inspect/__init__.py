"""Deep inspection of the first bytes of flows: bounded TCP reassembly and sans-IO parsers.

Reassemble one direction with ``Stream`` (sharing a ``ByteBudget``), feed the
chunks it delivers to a parser (``feed_chunks``), and read the events. Parsers
never raise on input: what they cannot parse becomes one ``Malformed`` event.
Every string meant for a person goes through ``escape``; secrets through the
``redact`` helpers.
"""

from .escape import REDACTED, escape, redact, redact_authorization, redact_cookie, redact_fields
from .http import (
    EndOfMessage,
    HttpRequestParser,
    HttpResponseParser,
    HttpState,
    ProtocolSwitch,
    Request,
    Response,
)
from .parser import Malformed, Parser, feed_chunks
from .reassembly import ByteBudget, Chunk, Data, Gap, Stream, Truncation
from .resp import Command, Reply, ReplyKind, RespCommandParser, RespReplyParser, RespState
from .ssh import SshBanner, SshParser, SshState
from .text import PayloadKind, PayloadProfile, profile
from .tls import ClientHello, ServerHello, TlsParser, TlsState, version_name

__all__ = [
    "REDACTED",
    "ByteBudget",
    "Chunk",
    "ClientHello",
    "Command",
    "Data",
    "EndOfMessage",
    "Gap",
    "HttpRequestParser",
    "HttpResponseParser",
    "HttpState",
    "Malformed",
    "Parser",
    "PayloadKind",
    "PayloadProfile",
    "ProtocolSwitch",
    "Reply",
    "ReplyKind",
    "Request",
    "RespCommandParser",
    "RespReplyParser",
    "RespState",
    "Response",
    "ServerHello",
    "SshBanner",
    "SshParser",
    "SshState",
    "Stream",
    "TlsParser",
    "TlsState",
    "Truncation",
    "escape",
    "feed_chunks",
    "profile",
    "redact",
    "redact_authorization",
    "redact_cookie",
    "redact_fields",
    "version_name",
]
