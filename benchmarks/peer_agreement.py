"""Whether tools gave the same answer, and if not, exactly where they differ."""

from __future__ import annotations

from dataclasses import dataclass

SHOWN_FLOWS = 8
"""Differing flows listed per side in a diff."""


@dataclass(frozen=True)
class ToolAnswer:
    """One tool's canonical answer on one capture, with its flow lines (``"http 4097 a:p b:q"``)."""

    tool: str
    packets: int
    captured_bytes: int
    vni_packets: dict[str, int]
    flow_lines: frozenset[str]


def differences(reference: ToolAnswer, other: ToolAnswer) -> list[str]:
    """Lines that say how ``other`` differs from ``reference``; empty when they agree."""
    ref, oth = reference.tool, other.tool
    lines = []
    for name in ("packets", "captured_bytes"):
        if getattr(reference, name) != getattr(other, name):
            lines.append(f"{name}: {ref} {getattr(reference, name):,}, {oth} {getattr(other, name):,}")
    for vni in sorted(set(reference.vni_packets) | set(other.vni_packets), key=int):
        mine, theirs = reference.vni_packets.get(vni, 0), other.vni_packets.get(vni, 0)
        if mine != theirs:
            lines.append(f"packets of VNI {vni}: {ref} {mine:,}, {oth} {theirs:,}")
    for tool, only in ((ref, reference.flow_lines - other.flow_lines), (oth, other.flow_lines - reference.flow_lines)):
        if only:
            shown = sorted(only)[:SHOWN_FLOWS]
            more = f" (and {len(only) - len(shown):,} more)" if len(only) > len(shown) else ""
            lines.append(f"flows only {tool} reports ({len(only):,}): " + "; ".join(shown) + more)
    return lines


def disagreements(answers: list[ToolAnswer], where: str) -> list[str]:
    """A report of every tool that differs from the first, or nothing when all agree."""
    reference, report = answers[0], []
    for other in answers[1:]:
        found = differences(reference, other)
        if found:
            report.append(f"{other.tool} disagrees with {reference.tool} on {where}:")
            report.extend(f"  {line}" for line in found)
    return report
