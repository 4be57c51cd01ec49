"""The task with vxlaninspect end to end: ``vxlaninspect scan FILE --format json`` in its own process.

The report's ``networks[].packets`` are the packets per VNI. A flow's label
comes from the application hints the report lists per direction
(``client_hints``, ``server_hints``), by the task's rule; not from its
``protocol``, which the inspection stage refines beyond the first bytes of
single packets (a flow seen only mid-response on port 80 is still ``http``
there). The time is the command's, from process start to the parsed report.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

from .task import HTTP, RESP, Answer, add_flow, flow_key

HINT_LABELS = {"http_request": HTTP, "http_response": HTTP, "resp_command": RESP}


def endpoint(text: str) -> tuple[bytes, int]:
    """``"10.0.1.2:80"`` or ``"[fd00::1]:80"`` as (address bytes, port)."""
    address, _, port = text.rpartition(":")
    return ipaddress.ip_address(address.strip("[]")).packed, int(port)


def to_answer(report: dict) -> Answer:
    answer = Answer(packets=report["stats"]["packets"], captured_bytes=report["stats"]["bytes"])
    for network in report["networks"]:
        if network["vni"] is not None and network["packets"]:
            answer.vni_packets[network["vni"]] = network["packets"]
    for flow in report["flows"]:
        if flow["vni"] is None or flow["transport"] != "tcp":
            continue
        labels = {HINT_LABELS.get(hint) for hint in flow["client_hints"] + flow["server_hints"]} - {None}
        if labels:
            key = flow_key(flow["vni"], *endpoint(flow["client"]), *endpoint(flow["server"]))
            add_flow(answer.flows, key, HTTP if HTTP in labels else RESP)
    return answer


def run(path: str) -> dict:
    vxlaninspect = shutil.which("vxlaninspect")
    if vxlaninspect is None:
        raise FileNotFoundError("the vxlaninspect command is not installed (pip install -e .)")
    done = subprocess.run([vxlaninspect, "scan", path, "--format", "json", "--quiet"], capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"vxlaninspect scan {path} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return json.loads(done.stdout)
