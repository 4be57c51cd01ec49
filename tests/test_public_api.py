"""The package's public names: callable as documented, and loaded only when used."""

import subprocess
import sys

import numpy as np

import vxlaninspect
import vxlaninspect.decoding  # noqa: F401  (a loaded submodule must not shadow the function)
import vxlaninspect.scanning  # noqa: F401
from tests.conftest import SAMPLES

PLAINTEXT = SAMPLES / "swarm-plaintext"


def test_every_exported_name_resolves():
    for name in vxlaninspect.__all__:
        assert getattr(vxlaninspect, name) is not None, name


def test_decode_and_scan_are_the_documented_functions():
    tables = list(vxlaninspect.decode(PLAINTEXT / "capture.pcap", vxlan_ports=[4789]))
    vnis = np.unique(np.concatenate([t.rows["vni"] for t in tables]))
    assert set(vnis.tolist()) == {-1, 4096, 4097}
    report = vxlaninspect.scan([PLAINTEXT / "capture.pcap"], topology=vxlaninspect.load_topology([PLAINTEXT]))
    assert [(n.vni, n.name, n.verdict.value) for n in report.networks] == [
        (4096, "ingress", "plaintext"),
        (4097, "app1-network", "plaintext"),
    ]


def test_importing_the_package_loads_neither_numpy_nor_numba():
    probe = "import sys, vxlaninspect; print(sorted(m for m in ('numpy', 'numba') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error():
    try:
        vxlaninspect.no_such_name
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("no AttributeError")
