"""Render the views of a Report dictionary as a table, Markdown, CSV or JSON.

Views read the report contract's names (``Report.to_dict()``), so what the
tables show is exactly what the JSON holds.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of a view: its heading and how to read it from a row."""

    heading: str
    read: Callable[[Row], Any]


def _join(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _node(address: str | None, node: str | None) -> str:
    return f"{node} ({address})" if node else str(address)


def _network(row: Row) -> str:
    """A finding's network; findings outside any overlay have none."""
    return row.get("network") or "underlay"


def _vni(row: Row) -> str:
    return "-" if row.get("vni") is None else str(row["vni"])


NETWORK_COLUMNS = (
    Column("VNI", _vni),
    Column("NETWORK", lambda r: r["name"]),
    Column("VERDICT", lambda r: r["verdict"]),
    Column("DECLARED ENCRYPTED", lambda r: "yes" if r.get("declared_encrypted") else "no"),
    Column("PACKETS", lambda r: r["packets"]),
    Column("BYTES", lambda r: r["bytes"]),
    Column("FLOWS", lambda r: r["flows"]),
    Column("SERVICES", lambda r: _join(r.get("services") or [])),
)

TUNNEL_COLUMNS = (
    Column("FROM", lambda r: _node(r["src"], r.get("src_node"))),
    Column("TO", lambda r: _node(r["dst"], r.get("dst_node"))),
    Column("ENCAP", lambda r: r["encap"]),
    Column("VNIS", lambda r: _join(r.get("vnis") or [])),
    Column("SPIS", lambda r: _join(f"0x{spi:08x}" for spi in r.get("spis") or [])),
    Column("PACKETS", lambda r: r["packets"]),
    Column("BYTES", lambda r: r["bytes"]),
)

SERVICE_COLUMNS = (
    Column("VNI", _vni),
    Column("SERVICE", lambda r: r.get("name") or "-"),
    Column("ADDRESS", lambda r: f"{r['ip']}:{r['port']}/{r['transport']}"),
    Column("PROTOCOL", lambda r: r.get("protocol") or "-"),
    Column("LEAKED", lambda r: "yes" if r.get("leaked") else "no"),
    Column("FLOWS", lambda r: r["flows"]),
)

FLOW_COLUMNS = (
    Column("VNI", _vni),
    Column("CLIENT", lambda r: r["client"]),
    Column("SERVER", lambda r: r["server"]),
    Column("SERVICE", lambda r: r.get("service") or "-"),
    Column("TRANSPORT", lambda r: r["transport"]),
    Column("PROTOCOL", lambda r: r.get("protocol") or "-"),
    Column("PACKETS", lambda r: r["packets"]),
    Column("BYTES", lambda r: r["bytes"]),
    Column("PAYLOAD", lambda r: r["payload_bytes"]),
)

FINDING_COLUMNS = (
    Column("SEVERITY", lambda r: r["severity"]),
    Column("NETWORK", _network),
    Column("SERVICE", lambda r: r.get("service") or "-"),
    Column("SERVER", lambda r: r["server"]),
    Column("PROTOCOL", lambda r: r["protocol"]),
    Column("KIND", lambda r: r["kind"]),
    Column("COUNT", lambda r: r["count"]),
    Column("EVIDENCE", lambda r: " | ".join(r.get("evidence") or [])),
)

VERIFY_FIELD_COLUMNS = (
    Column("FIELD", lambda r: r["field"]),
    Column("COMPARED", lambda r: r["compared"]),
    Column("AGREED", lambda r: r["agreed"]),
    Column("KNOWN DIFFERENCES", lambda r: r["known"]),
    Column("DISAGREED", lambda r: r["disagreed"]),
)

DIFFERENCE_COLUMNS = (
    Column("FRAME", lambda r: r["frame"]),
    Column("FIELD", lambda r: r["field"]),
    Column("VXLANINSPECT", lambda r: r["ours"]),
    Column("TSHARK", lambda r: r["tshark"]),
)

KNOWN_COLUMNS = (
    Column("REASON", lambda r: r["reason"]),
    Column("COUNT", lambda r: r["count"]),
    Column("WHY", lambda r: r["why"]),
)

CAPTURE_COLUMNS = (
    Column("CAPTURE", lambda r: r["path"]),
    Column("FORMAT", lambda r: r.get("format") or "-"),
    Column("PACKETS", lambda r: r["packets"]),
    Column("BYTES", lambda r: r["bytes"]),
    Column("ERROR", lambda r: r.get("error") or ""),
)


def safe(value: Any) -> Any:
    """Text with every control character shown as an escape, so no cell can drive a terminal."""
    if not isinstance(value, str) or value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" for ch in value)


def _cells(row: Row, columns: Sequence[Column]) -> list[Any]:
    return [safe(column.read(row)) for column in columns]


def table_text(rows: Sequence[Row], columns: Sequence[Column], fmt: str) -> str:
    """Rows as a terminal table (``table``) or a Markdown table (``markdown``)."""
    from tabulate import tabulate

    body = [_cells(row, columns) for row in rows]
    style = "github" if fmt == "markdown" else "simple"
    return tabulate(body, headers=[c.heading for c in columns], tablefmt=style, disable_numparse=True)


def csv_text(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """Rows as CSV with lower-case headings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.heading.lower().replace(" ", "_") for c in columns])
    for row in rows:
        writer.writerow(_cells(row, columns))
    return out.getvalue()


def json_text(value: Any) -> str:
    """JSON with ASCII escapes only, so no byte of a payload reaches a terminal raw."""
    return json.dumps(value, indent=2, ensure_ascii=True) + "\n"


def view_text(rows: Sequence[Row], columns: Sequence[Column], fmt: str) -> str:
    """One view in any format; JSON gives the rows themselves."""
    if fmt == "json":
        return json_text(list(rows))
    if fmt == "csv":
        return csv_text(rows, columns)
    if not rows:
        return "(none)\n"
    return table_text(rows, columns, fmt) + "\n"
