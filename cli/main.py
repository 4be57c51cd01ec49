"""The ``vxlaninspect`` command: a thin Click layer over the library.

Only click is imported at start, so ``--help`` answers at once; numpy, numba and
the compiled kernel load when a command decodes packets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from . import render

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE = 0, 1, 2
FORMATS = ("table", "json", "csv", "markdown")
FAIL_ON = ("leak", "credential", "violation", "never")


class UserError(click.ClickException):
    """A mistake in what the user gave: one line on stderr, exit status 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        error(self.format_message())


def error(message: str) -> None:
    """One line on stderr; a file name or payload in it cannot drive the terminal."""
    click.echo(f"vxlaninspect: error: {render.safe(message)}", err=True)


@dataclass(frozen=True)
class Inputs:
    """What every reporting command reads, and how."""

    captures: tuple[str, ...]
    vxlan_ports: tuple[int, ...]
    docker: tuple[str, ...]
    expect_encrypted: tuple[str, ...]
    recursive: bool
    jobs: int
    db: str | None
    dask_address: str | None
    max_flows: int | None
    show_secrets: bool
    quiet: bool


def input_options(command: Callable) -> Callable:
    """The options shared by every command that scans captures."""
    options = (
        click.argument("captures", nargs=-1, required=True, metavar="CAPTURE..."),
        click.option(
            "--vxlan-port",
            "vxlan_ports",
            multiple=True,
            type=click.IntRange(1, 65535),
            help="UDP port that carries VXLAN; repeat for several. Default: 4789 and 8472.",
        ),
        click.option(
            "--docker",
            multiple=True,
            type=click.Path(exists=True),
            help="JSON from 'docker network inspect --verbose' or 'docker service inspect': a file or a directory; repeatable.",
        ),
        click.option(
            "--expect-encrypted",
            multiple=True,
            metavar="VNI|NAME",
            help="A network that must be encrypted, by VNI or name; cleartext on it is a violation. Repeatable.",
        ),
        click.option("-r", "--recursive", is_flag=True, help="Read directories recursively."),
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(1),
            default=os.cpu_count() or 1,
            show_default="all cores",
            help="Captures scanned in parallel.",
        ),
        click.option(
            "--db",
            type=click.Path(dir_okay=False),
            help="SQLite file keeping per-capture results; unchanged captures are not scanned again.",
        ),
        click.option("--dask", "dask_address", metavar="ADDRESS", help="Scan on this Dask scheduler (e.g. tcp://host:8786)."),
        click.option(
            "--max-flows",
            type=click.IntRange(1),
            help="Flows held per capture before the least recently seen are evicted (and counted). Default: 100000.",
        ),
        click.option("--show-secrets", is_flag=True, help="Show passwords, tokens and cookies found in traffic (redacted by default)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, no warnings; errors only."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def output_options(command: Callable) -> Callable:
    command = click.option(
        "-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Write the report here instead of standard output."
    )(command)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)(command)


def _progress_bar(inputs: Inputs) -> Any:
    """A progress bar on a terminal; none when stderr is piped or -q is given."""
    if inputs.quiet or not sys.stderr.isatty():
        return None
    return click.progressbar(length=1, label="scanning", file=sys.stderr, show_eta=True, show_percent=True)


def _scan(inputs: Inputs) -> dict[str, Any]:
    """Scan the inputs into a report dictionary; user mistakes become UserError."""
    from vxlaninspect.api import ScanRequest, run_scan
    from vxlaninspect.errors import CaptureError
    from vxlaninspect.topology import TopologyError

    request = ScanRequest(
        names=inputs.captures,
        recursive=inputs.recursive,
        vxlan_ports=inputs.vxlan_ports,
        docker=inputs.docker,
        expect_encrypted=inputs.expect_encrypted,
        jobs=inputs.jobs,
        db=inputs.db,
        dask_address=inputs.dask_address,
        max_flows=inputs.max_flows,
        show_secrets=inputs.show_secrets,
    )
    bar = _progress_bar(inputs)

    def progress(done: int, total: int) -> None:
        if total:
            bar.length = total
            bar.update(done - bar.pos)

    try:
        if bar is None:
            report = run_scan(request)
        else:
            with bar:
                report = run_scan(request, progress=progress)
    except (CaptureError, TopologyError, ValueError) as problem:
        raise UserError(str(problem)) from None
    except OSError as problem:
        raise UserError(f"{problem.filename or ''}: {problem.strerror or problem}") from None
    if not inputs.quiet:
        for warning in report["warnings"]:
            click.echo(f"vxlaninspect: warning: {render.safe(warning)}", err=True)
    return report


def _capture_errors(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['path']}: at byte {c.get('error_offset') or 0}: {c['error']}" for c in report["captures"] if c.get("error")
    ]


def _finish(report: dict[str, Any], failed: bool) -> None:
    """Report unreadable captures on stderr and leave with the right status."""
    errors = _capture_errors(report)
    for message in errors:
        error(message)
    if errors:
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_FAIL_ON if failed else EXIT_OK)


def fail_condition(report: dict[str, Any], fail_on: str) -> bool:
    """Whether a report meets a --fail-on condition."""
    if fail_on == "leak":
        return any(s.get("leaked") for s in report["services"]) or any(
            f["severity"] in ("credential", "data") for f in report["findings"]
        )
    if fail_on == "credential":
        return any(f["severity"] == "credential" for f in report["findings"])
    if fail_on == "violation":
        return any(n["verdict"] == "violation" for n in report["networks"])
    return False


def _summary(report: dict[str, Any]) -> str:
    stats = report["stats"]
    files = len(report["captures"])
    return (
        f"{files} capture{'s' if files != 1 else ''}, {stats['packets']} packets, {stats['bytes']} bytes: "
        f"{stats['vxlan_packets']} VXLAN, {stats['esp_packets']} ESP, {stats['underlay_packets']} underlay, "
        f"{stats['decode_errors']} undecodable, {stats['seconds']:.2f} s\n"
    )


def _section(title: str, rows: list[dict[str, Any]], columns: tuple, fmt: str) -> str:
    heading = f"## {title}" if fmt == "markdown" else title.upper()
    return f"\n{heading}\n{render.view_text(rows, columns, fmt)}"


def scan_text(report: dict[str, Any], fmt: str, verbose: int) -> str:
    """The main report: networks with verdicts, then what leaked."""
    if fmt == "json":
        return render.json_text(report)
    leaked = [s for s in report["services"] if s.get("leaked")]
    if fmt == "csv":
        return render.view_text(report["findings"], render.FINDING_COLUMNS, fmt)
    parts = [_summary(report)]
    if verbose:
        parts.append(_section("Captures", report["captures"], render.CAPTURE_COLUMNS, fmt))
    parts.append(_section("Overlay networks", report["networks"], render.NETWORK_COLUMNS, fmt))
    parts.append(_section("Services that sent plaintext", leaked, render.SERVICE_COLUMNS, fmt))
    overlay = [f for f in report["findings"] if f["vni"] is not None]
    underlay = [f for f in report["findings"] if f["vni"] is None]
    parts.append(_section("What leaked", overlay, render.FINDING_COLUMNS, fmt))
    if underlay:
        parts.append(_section("What leaked outside any overlay (underlay)", underlay, render.FINDING_COLUMNS, fmt))
    if verbose:
        parts.append(_section("Tunnels", report["tunnels"], render.TUNNEL_COLUMNS, fmt))
    if verbose > 1:
        parts.append(_section("Flows", report["flows"], render.FLOW_COLUMNS, fmt))
    return "".join(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vxlaninspect")
def main() -> None:
    """Find the overlay networks and services that leak cleartext in packet captures.

    \b
    Examples:
      vxlaninspect scan node1.pcap --docker inspect/
      tcpdump -i eth0 -w - udp port 4789 or esp | vxlaninspect scan -
      vxlaninspect scan -r captures/ --fail-on violation --expect-encrypted app1-network

    Exit status: 0 done, 1 a --fail-on condition was met, 2 a usage error or a
    capture that could not be read (named with the byte offset on stderr).
    """
    # numba probes for a BLAS by importing SciPy's when it first loads a compiled
    # function: a fifth of a second of a command's start, for linear algebra no
    # command does. The process is the command's own, so it goes without.
    sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[arg-type]


def _inputs(params: dict[str, Any]) -> Inputs:
    return Inputs(**{name: params.pop(name) for name in Inputs.__dataclass_fields__})


@main.command()
@input_options
@output_options
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="never",
    show_default=True,
    help="Exit 1 when a service leaked plaintext, a credential leaked, or an encrypted network carried cleartext.",
)
@click.option("-v", "--verbose", count=True, help="Also show captures and tunnels; -vv shows every flow.")
def scan(fmt: str, output: Any, fail_on: str, verbose: int, **params: Any) -> None:
    """Which overlay networks carry cleartext, and which services leaked what.

    \b
    Examples:
      vxlaninspect scan node1.pcap node2.pcap.gz --docker network-inspect.json
      vxlaninspect scan capture.pcapng --expect-encrypted 4097 --fail-on violation
      vxlaninspect scan -r /archive -j 8 --db scans.sqlite --format json -o report.json
    """
    inputs = _inputs(params)
    report = _scan(inputs)
    output.write(scan_text(report, fmt, verbose))
    _finish(report, fail_condition(report, fail_on))


def _view_command(name: str, key: str, columns: tuple, summary: str, example: str) -> None:
    """A command that scans and shows one section of the report."""

    def command(fmt: str, output: Any, **params: Any) -> None:
        report = _scan(_inputs(params))
        output.write(render.view_text(report[key], columns, fmt))
        _finish(report, False)

    command.__doc__ = f"{summary}\n\n    \b\n    Example:\n      {example}\n    "
    main.command(name)(output_options(input_options(command)))


_view_command(
    "networks",
    "networks",
    render.NETWORK_COLUMNS,
    "Overlay networks (VNIs) with traffic counts and verdicts.",
    "vxlaninspect networks node1.pcap --docker network-inspect.json",
)
_view_command(
    "tunnels",
    "tunnels",
    render.TUNNEL_COLUMNS,
    "Node pairs and what they tunnel: VXLAN VNIs, ESP SPIs.",
    "vxlaninspect tunnels node1.pcap --format csv",
)
_view_command(
    "leaks",
    "findings",
    render.FINDING_COLUMNS,
    "What leaked in cleartext, with redacted evidence.",
    "vxlaninspect leaks node1.pcap --docker inspect/ --format json",
)

SORT_KEYS = ("bytes", "packets", "payload", "first", "last")


@main.command()
@input_options
@output_options
@click.option("--vni", type=int, multiple=True, help="Only flows in this VNI (repeatable; -1 for the underlay).")
@click.option("--service", multiple=True, help="Only flows from or to this service name (repeatable).")
@click.option("--protocol", multiple=True, help="Only flows of this application protocol: http, resp, tls, ... (repeatable).")
@click.option("--sort", "sort_key", type=click.Choice(SORT_KEYS), default="bytes", show_default=True, help="Largest (or earliest) first.")
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True, help="Rows shown; 0 for all.")
def flows(fmt: str, output: Any, vni: tuple[int, ...], service: tuple[str, ...], protocol: tuple[str, ...], sort_key: str, limit: int, **params: Any) -> None:
    """Conversations per overlay network, with their protocols and sizes.

    \b
    Example:
      vxlaninspect flows node1.pcap --vni 4097 --protocol resp --sort payload
    """
    report = _scan(_inputs(params))
    rows = select_flows(report["flows"], vni, service, protocol, sort_key, limit)
    output.write(render.view_text(rows, render.FLOW_COLUMNS, fmt))
    _finish(report, False)


def select_flows(
    rows: list[dict[str, Any]], vni: tuple[int, ...], service: tuple[str, ...], protocol: tuple[str, ...], sort_key: str, limit: int
) -> list[dict[str, Any]]:
    """Flows filtered by VNI, service and protocol, sorted and cut to ``limit``."""
    vnis = {None if v == -1 else v for v in vni}
    service_names = set(service)
    chosen = [
        r
        for r in rows
        if (not vnis or r["vni"] in vnis)
        and (not service or not service_names.isdisjoint((r.get("service"), r.get("client_name"), r.get("server_name"))))
        and (not protocol or r.get("protocol") in protocol)
    ]
    field = {"payload": "payload_bytes", "first": "first_ts", "last": "last_ts"}.get(sort_key, sort_key)
    chosen.sort(key=lambda r: r[field] or "", reverse=sort_key in ("bytes", "packets", "payload", "last"))
    return chosen[:limit] if limit else chosen


@main.command()
@click.argument("capture", metavar="CAPTURE")
@click.option("--vni", type=int, required=True, help="The overlay network to extract.")
@click.option("--service", help="Only frames to or from this service: a name from --docker, or IP[:PORT].")
@click.option("-w", "--write", "out", required=True, type=click.Path(dir_okay=False), help="The pcap file to write.")
@click.option("--vxlan-port", "vxlan_ports", multiple=True, type=click.IntRange(1, 65535), help="UDP port that carries VXLAN (repeatable).")
@click.option("--docker", multiple=True, type=click.Path(exists=True), help="Docker inspect JSON naming services (file or directory).")
def extract(capture: str, vni: int, service: str | None, out: str, vxlan_ports: tuple[int, ...], docker: tuple[str, ...]) -> None:
    """Decapsulate one overlay network into a plain pcap of its inner frames.

    Timestamps are kept, so the result opens in Wireshark as ordinary traffic.

    \b
    Example:
      vxlaninspect extract node1.pcap --vni 4097 --service app1_redis --docker inspect/ -w redis.pcap
    """
    from vxlaninspect.errors import CaptureError
    from vxlaninspect.extract import extract_overlay
    from vxlaninspect.topology import TopologyError

    try:
        result = extract_overlay(capture, out, vni=vni, service=service, vxlan_ports=vxlan_ports, docker=docker)
    except (CaptureError, TopologyError, ValueError) as problem:
        raise UserError(str(problem)) from None
    except OSError as problem:
        raise UserError(f"{problem.filename or out}: {problem.strerror or problem}") from None
    click.echo(render.safe(f"{result.frames} frames of VNI {vni} written to {out}"), err=True)
    if result.error is not None:
        error(str(result.error))
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("capture", metavar="CAPTURE")
@click.option("--vxlan-port", "vxlan_ports", multiple=True, type=click.IntRange(1, 65535), help="UDP port that carries VXLAN (repeatable).")
@click.option("--tshark", "tshark", default="tshark", show_default=True, help="The tshark program to compare with.")
@click.option("--max-packets", type=click.IntRange(1), help="Compare only the first packets.")
@click.option("--examples", type=click.IntRange(0), default=20, show_default=True, help="Disagreements shown, and examples per known difference.")
@output_options
def verify(capture: str, vxlan_ports: tuple[int, ...], tshark: str, max_packets: int | None, examples: int, fmt: str, output: Any) -> None:
    """Compare vxlaninspect's decoding with Wireshark's (tshark), packet by packet.

    Prints agreement per field, then the first disagreements; differences
    where tshark and vxlaninspect differ by design are counted under their
    reason. Exits 1 on any disagreement.

    \b
    Example:
      vxlaninspect verify node1.pcap --vxlan-port 8472
    """
    from dataclasses import replace

    from vxlaninspect.config import DEFAULT_CONFIG
    from vxlaninspect.errors import CaptureError
    from vxlaninspect.verify import TsharkError, verify as compare

    config = replace(DEFAULT_CONFIG, vxlan_ports=vxlan_ports) if vxlan_ports else DEFAULT_CONFIG
    try:
        result = compare(capture, config, tshark, max_packets=max_packets, examples=examples)
    except (CaptureError, TsharkError, ValueError) as problem:
        raise UserError(str(problem)) from None
    output.write(verification_text(result, fmt))
    if result.capture_error:
        error(result.capture_error)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL_ON)


def verification_text(result: Any, fmt: str) -> str:
    """A verification as per-field agreement, disagreements and known differences."""
    from dataclasses import asdict

    fields = [
        {"field": t.field, "compared": t.compared, "agreed": t.agreed, "known": t.known, "disagreed": t.disagreed}
        for t in result.fields
    ]
    disagreements = [{k: v for k, v in asdict(d).items() if k != "reason"} for d in result.disagreements]
    known = [{"reason": k.reason.name.lower().replace("_", "-"), "count": k.count, "why": k.text} for k in result.known]
    if fmt == "json":
        return render.json_text(
            {
                "path": result.path,
                "ok": result.ok,
                "packets": result.packets,
                "tshark_packets": result.tshark_packets,
                "fields": fields,
                "disagreement_count": result.disagreement_count,
                "disagreements": disagreements,
                "known": known,
                "capture_error": result.capture_error,
                "tshark_error": result.tshark_error,
            }
        )
    if fmt == "csv":
        return render.view_text(fields, render.VERIFY_FIELD_COLUMNS, fmt)
    verdict = "agree" if result.ok else f"DISAGREE on {result.disagreement_count} field values"
    head = f"{result.path}: vxlaninspect decoded {result.packets} packets, tshark {result.tshark_packets}: {verdict}"
    return (
        render.safe(head)
        + "\n"
        + _section("Agreement per field", fields, render.VERIFY_FIELD_COLUMNS, fmt)
        + _section("Disagreements (first ones)", disagreements, render.DIFFERENCE_COLUMNS, fmt)
        + _section("Known differences, by reason", known, render.KNOWN_COLUMNS, fmt)
    )
