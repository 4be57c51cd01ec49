import numpy as np
import pytest

from vxlaninspect.config import DEFAULT_CONFIG, DecodeConfig
from vxlaninspect.schema import NO_VNI, PACKET_DTYPE, Encap, empty_table


def test_default_port_table_names_each_tunnel():
    table = DEFAULT_CONFIG.port_table()
    assert table.dtype == np.uint8 and table.shape == (65536,)
    assert [Encap(table[p]) for p in (4789, 8472, 6081, 4790, 4500)] == [
        Encap.VXLAN, Encap.VXLAN, Encap.GENEVE, Encap.VXLAN_GPE, Encap.ESP_UDP
    ]
    assert np.count_nonzero(table) == 5


def test_custom_vxlan_port_replaces_defaults_and_wins_over_other_types():
    table = DecodeConfig(vxlan_ports=(7777, 4500)).port_table()
    assert table[7777] == Encap.VXLAN and table[4500] == Encap.VXLAN
    assert table[4789] == Encap.NONE and table[8472] == Encap.NONE


@pytest.mark.parametrize("port", [0, 65536, -1, "4789"])
def test_bad_port_is_refused_with_its_name(port):
    with pytest.raises(ValueError, match="vxlan_ports"):
        DecodeConfig(vxlan_ports=(port,))


def test_empty_table_marks_vnis_absent():
    rows = empty_table(3)
    assert rows.dtype == PACKET_DTYPE
    assert (rows["vni"] == NO_VNI).all() and (rows["outer_vni"] == NO_VNI).all()
    assert (rows["status"] == 0).all()
