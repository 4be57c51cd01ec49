"""Docker metadata: networks, services and nodes from `docker network/service inspect` JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vxlaninspect.topology import (
    EMPTY_TOPOLOGY,
    Endpoint,
    Network,
    Topology,
    TopologyError,
    load_topology,
    well_known_service,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# The format of `docker network inspect --verbose ov1`, as printed in the Docker CLI
# reference (docker/cli, docs/reference/commandline/network_inspect.md, section
# "View detailed information of a network (--verbose)").
OV1_VERBOSE = [
    {
        "Name": "ov1",
        "Id": "ybmyjvao9vtzy3oorxbssj13b",
        "Created": "2017-03-13T17:04:39.776106792Z",
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]},
        "Internal": False,
        "Attachable": False,
        "Containers": {
            "020403bd88a15f60747fd25d1ad5fa1272eb740e8a97fc547d8ad07b2f721c5e": {
                "Name": "s1.1.pjn2ik0sfgkfzed3h0s00gs9o",
                "EndpointID": "ad16946f416562d658f3bb30b9830d73ad91ccf6feae44411269cd0ff674714e",
                "MacAddress": "02:42:0a:00:00:04",
                "IPv4Address": "10.0.0.4/24",
                "IPv6Address": "",
            }
        },
        "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"},
        "Labels": {},
        "Peers": [
            {"Name": "net-3-5d3cfd30a58c", "IP": "192.168.33.13"},
            {"Name": "net-1-6ecbc0040a73", "IP": "192.168.33.11"},
            {"Name": "net-2-fb80208efd75", "IP": "192.168.33.12"},
        ],
        "Services": {
            "s1": {
                "VIP": "10.0.0.2",
                "Ports": [],
                "LocalLBIndex": 257,
                "Tasks": [
                    {
                        "Name": "s1.2.q4hcq2aiiml25ubtrtg4q1txt",
                        "EndpointID": "040879b027e55fb658e8b60ae3b87c6cdac7d291e86a190a3b5ac6567b26511a",
                        "EndpointIP": "10.0.0.5",
                        "Info": {"Host IP": "192.168.33.11"},
                    },
                    {
                        "Name": "s1.3.yawl4cgkp7imkfx469kn9j6lm",
                        "EndpointID": "106edff9f120efe44068b834e1cddb5b39dd4a3af70211378b2f7a9e562bbad8",
                        "EndpointIP": "10.0.0.3",
                        "Info": {"Host IP": "192.168.33.12"},
                    },
                    {
                        "Name": "s1.1.pjn2ik0sfgkfzed3h0s00gs9o",
                        "EndpointID": "ad16946f416562d658f3bb30b9830d73ad91ccf6feae44411269cd0ff674714e",
                        "EndpointIP": "10.0.0.4",
                        "Info": {"Host IP": "192.168.33.13"},
                    },
                ],
            }
        },
    }
]

# `docker network inspect ingress` (not verbose) from the same reference page: no
# "Ingress" key in that engine version, the routing mesh's sandbox in "Containers".
INGRESS = [
    {
        "Name": "ingress",
        "Id": "j0izitrut30h975vk4m1u5kk3",
        "Created": "2016-11-08T06:49:59.803387552Z",
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": None,
            "Config": [{"Subnet": "10.255.0.0/16", "Gateway": "10.255.0.1"}],
        },
        "Internal": False,
        "Attachable": False,
        "Containers": {
            "ingress-sbox": {
                "Name": "ingress-endpoint",
                "EndpointID": "40e002d27b7e5d75f60bc72199d8cae3344e1896abec5eddae9743755fe09115",
                "MacAddress": "02:42:0a:ff:00:03",
                "IPv4Address": "10.255.0.3/16",
                "IPv6Address": "",
            }
        },
        "Options": {"com.docker.network.driver.overlay.vxlanid_list": "256"},
        "Labels": {},
        "Peers": [
            {"Name": "net-1-1d22adfe4d5c", "IP": "192.168.33.11"},
            {"Name": "net-2-d55d838b34af", "IP": "192.168.33.12"},
        ],
    }
]

# `docker network inspect --verbose --format '{{json .Services}}'` of a swarm-scoped
# macvlan network, as shown in infobloxopen/docker-infoblox README.md: a service
# without VIP ("<nil>") and tasks whose "Info" is null. Wrapped in a network object.
MACVLAN = {
    "Name": "swarm-macvlan",
    "Id": "0mn2mvpuagpcd6o2vd5l2e1hl",
    "Scope": "swarm",
    "Driver": "macvlan",
    "Options": {"parent": "eth1"},
    "Services": {
        "swarm-macvlan-test": {
            "LocalLBIndex": 262,
            "Ports": [],
            "Tasks": [
                {
                    "EndpointID": "18c19d799d117a8afa20fcf5bb51c8927a4921abe121913e0b080284da459080",
                    "EndpointIP": "192.168.9.196",
                    "Info": None,
                    "Name": "swarm-macvlan-test.2.xqlym8mbvpo9qw6g9b6bwbm5j",
                }
            ],
            "VIP": "<nil>",
        }
    },
}

# `docker service inspect` of a stack service attached to two networks, in the
# format of real output (Endpoint.VirtualIPs with "Addr" as a CIDR, NetworkID, and
# Spec.TaskTemplate.Networks), as in Docker's service inspect reference and the
# API's ServiceSpec/Endpoint types (moby/moby api/types/swarm).
SERVICE = [
    {
        "ID": "dmu1ept4cxcfe8k8lhtux3ro3",
        "Version": {"Index": 12},
        "CreatedAt": "2016-06-17T18:44:02.558012087Z",
        "Spec": {
            "Name": "app_web",
            "Labels": {"com.docker.stack.namespace": "app"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "nginx:1.25"},
                "Networks": [{"Target": "ybmyjvao9vtzy3oorxbssj13b", "Aliases": ["web"]}],
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {
                "Mode": "vip",
                "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}],
            },
        },
        "Endpoint": {
            "Spec": {"Mode": "vip"},
            "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}],
            "VirtualIPs": [
                {"NetworkID": "j0izitrut30h975vk4m1u5kk3", "Addr": "10.255.0.7/16"},
                {"NetworkID": "ybmyjvao9vtzy3oorxbssj13b", "Addr": "10.0.0.9/24"},
            ],
        },
    }
]


def write(directory: Path, name: str, document: object) -> Path:
    path = directory / name
    path.write_text(json.dumps(document, indent=4))
    return path


def overlay(name: str, vni: str, options: dict[str, str]) -> dict[str, object]:
    return {
        "Name": name,
        "Id": f"{name}0000000000000000000000"[:25],
        "Scope": "swarm",
        "Driver": "overlay",
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.0.9.0/24", "Gateway": "10.0.9.1"}]},
        "Options": {"com.docker.network.driver.overlay.vxlanid_list": vni, **options},
    }


def test_verbose_network_gives_vni_subnet_nodes_and_endpoints(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "ov1.json", OV1_VERBOSE)])
    assert topology.networks == (
        Network("ybmyjvao9vtzy3oorxbssj13b", "ov1", (4097,), ("10.0.0.0/24",), False, False, "swarm", "overlay"),
    )
    assert topology.network_by_vni(4097).name == "ov1"
    assert topology.network_by_vni(4096) is None
    assert dict(topology.nodes) == {
        "192.168.33.13": "net-3-5d3cfd30a58c",
        "192.168.33.11": "net-1-6ecbc0040a73",
        "192.168.33.12": "net-2-fb80208efd75",
    }
    assert topology.node_name("192.168.33.12") == "net-2-fb80208efd75"
    assert topology.endpoint("ov1", "10.0.0.2") == Endpoint("10.0.0.2", "s1", None, "ov1", True, None)
    assert topology.endpoint("ov1", "10.0.0.5") == Endpoint(
        "10.0.0.5", "s1", "s1.2.q4hcq2aiiml25ubtrtg4q1txt", "ov1", False, "net-1-6ecbc0040a73"
    )
    # The local container and the verbose task are one endpoint; the task knows its node.
    assert topology.endpoint(None, "10.0.0.4").node == "net-3-5d3cfd30a58c"
    assert sorted(e.ip for e in topology.endpoints) == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
    assert topology.warnings == ()


def test_ingress_network_and_its_sandbox(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "ingress.json", INGRESS)])
    (network,) = topology.networks
    assert (network.name, network.vnis, network.subnets, network.ingress) == (
        "ingress",
        (256,),
        ("10.255.0.0/16",),
        True,
    )
    sandbox = topology.endpoint("ingress", "10.255.0.3/16")
    assert (sandbox.service, sandbox.task, sandbox.is_vip) == ("ingress-endpoint", "ingress-endpoint", False)


def test_service_inspect_vips_take_the_network_names_of_other_files(tmp_path: Path) -> None:
    files = [
        write(tmp_path, "a.json", SERVICE),
        write(tmp_path, "b.json", OV1_VERBOSE),
        write(tmp_path, "c.json", INGRESS),
    ]
    topology = load_topology(files)
    assert topology.endpoint("ov1", "10.0.0.9") == Endpoint("10.0.0.9", "app_web", None, "ov1", True, None)
    assert topology.endpoint("ingress", "10.255.0.7") == Endpoint("10.255.0.7", "app_web", None, "ingress", True, None)
    assert topology.endpoint("ybmyjvao9vtzy3oorxbssj13b", "10.0.0.9").service == "app_web"
    assert [n.name for n in topology.networks] == ["ov1", "ingress"]
    # Without the network files, the VIP keeps the network ID it was given.
    alone = load_topology([files[0]])
    assert alone.endpoint("ybmyjvao9vtzy3oorxbssj13b", "10.0.0.9").network == "ybmyjvao9vtzy3oorxbssj13b"


def test_directory_loads_every_json_file_and_nothing_else(tmp_path: Path) -> None:
    write(tmp_path, "network-inspect.json", OV1_VERBOSE + INGRESS)
    write(tmp_path, "service-inspect.json", SERVICE)
    (tmp_path / "notes.txt").write_text("not json")
    topology = load_topology([tmp_path])
    assert {n.name for n in topology.networks} == {"ov1", "ingress"}
    assert topology.endpoint(None, "10.0.0.9").service == "app_web"
    assert load_topology(tmp_path) == topology  # one path alone is not iterated character by character


def test_single_object_and_null_fields(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "macvlan.json", MACVLAN)])
    assert topology.network_named("swarm-macvlan").vnis == ()
    assert topology.endpoint("swarm-macvlan", "192.168.9.196") == Endpoint(
        "192.168.9.196",
        "swarm-macvlan-test",
        "swarm-macvlan-test.2.xqlym8mbvpo9qw6g9b6bwbm5j",
        "swarm-macvlan",
        False,
        None,
    )
    assert all(not e.is_vip for e in topology.endpoints)  # "<nil>" is no VIP


def test_network_named_accepts_name_id_and_unique_id_prefix(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "n.json", OV1_VERBOSE + INGRESS)])
    assert topology.network_named("ov1").id == "ybmyjvao9vtzy3oorxbssj13b"
    assert topology.network_named("ybmyjvao9vtzy3oorxbssj13b").name == "ov1"
    assert topology.network_named("j0iz").name == "ingress"
    assert topology.network_named("") is None
    assert topology.network_named("nope") is None


def test_multiple_vnis_and_ipv6_subnets(tmp_path: Path) -> None:
    network = overlay("dual", "4101, 4102", {})
    network["IPAM"]["Config"].append({"Subnet": "fd00:0:0:1::/64"})
    (loaded,) = load_topology([write(tmp_path, "d.json", [network])]).networks
    assert loaded.vnis == (4101, 4102)
    assert loaded.subnets == ("10.0.9.0/24", "fd00:0:0:1::/64")


def test_encrypted_key_with_empty_value_declares_encryption(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "p.json", [overlay("payments", "4100", {"encrypted": ""})])])
    assert topology.network_named("payments").declared_encrypted
    assert topology.warnings == ()


def test_encrypted_false_still_encrypts_and_says_so(tmp_path: Path) -> None:
    topology = load_topology([write(tmp_path, "p.json", [overlay("payments", "4100", {"encrypted": "false"})])])
    assert topology.network_named("payments").declared_encrypted
    (warning,) = topology.warnings
    assert "'payments'" in warning and "still encrypts" in warning


@pytest.mark.parametrize(
    "key", ["encrypt", "Encrypted", "ENCRYPTED", "encryption", "ecnrypted", "encrpyted", "encrypted ", "secure"]
)
def test_near_miss_option_keys_warn_that_docker_ignores_them(tmp_path: Path, key: str) -> None:
    topology = load_topology([write(tmp_path, "b.json", [overlay("billing", "4101", {key: "true"})])])
    assert not topology.network_named("billing").declared_encrypted
    (warning,) = topology.warnings
    assert "'billing'" in warning and repr(key) in warning and "Docker ignores it" in warning
    assert "not encrypted" in warning


def test_near_miss_beside_the_real_key_warns_without_denying_encryption(tmp_path: Path) -> None:
    topology = load_topology(
        [write(tmp_path, "b.json", [overlay("billing", "4101", {"encrypted": "", "encrypt": "true"})])]
    )
    assert topology.network_named("billing").declared_encrypted
    (warning,) = topology.warnings
    assert "'encrypt'" in warning and "not encrypted" not in warning


@pytest.mark.parametrize(
    "key", ["com.docker.network.driver.mtu", "com.docker.network.driver.overlay.vxlanid_list", "parent", "description"]
)
def test_ordinary_option_keys_do_not_warn(tmp_path: Path, key: str) -> None:
    options = {key: "4101"} if "vxlanid" in key else {key: "1450"}
    assert load_topology([write(tmp_path, "o.json", [overlay("plain", "4101", options)])]).warnings == ()


def test_unknown_objects_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.json", [{"Id": "abc", "State": {"Running": True}}, *OV1_VERBOSE])
    topology = load_topology([path])
    assert [n.name for n in topology.networks] == ["ov1"]
    (warning,) = topology.warnings
    assert warning.startswith(f"{path}: item 0 ")


def test_topologies_add_and_merge(tmp_path: Path) -> None:
    first = load_topology([write(tmp_path, "a.json", OV1_VERBOSE)])
    second = load_topology([write(tmp_path, "b.json", SERVICE + INGRESS)])
    merged = first + second
    assert merged == load_topology([tmp_path / "a.json", tmp_path / "b.json"])
    assert merged.endpoint("ov1", "10.0.0.9").service == "app_web"
    assert first + EMPTY_TOPOLOGY == first
    assert EMPTY_TOPOLOGY + first == first
    assert first + first == first
    with pytest.raises(TypeError):
        first + 1


def test_same_network_from_two_nodes_merges_its_facts() -> None:
    a = Topology(
        (Network("x1", "x", (4097,), ("10.0.1.0/24",), False, False, "swarm", "overlay"),),
        {"172.17.0.71": "n1"},
        (),
        (),
    )
    b = Topology(
        (Network("x1", "x", (4097, 4098), (), True, False, "swarm", "overlay"),), {"172.17.0.74": "n2"}, (), ()
    )
    (network,) = (a + b).networks
    assert network.vnis == (4097, 4098) and network.subnets == ("10.0.1.0/24",) and network.declared_encrypted
    assert dict((a + b).nodes) == {"172.17.0.71": "n1", "172.17.0.74": "n2"}


def test_lookups_normalise_addresses() -> None:
    topology = Topology((), {"fd00::1": "n1"}, (Endpoint("10.0.0.5", "s", None, "net", True, None),), ())
    assert topology.node_name("fd00:0:0::1") == "n1"
    assert topology.endpoint("net", "10.0.0.5/24").service == "s"
    assert topology.endpoint("net", "not an ip") is None
    assert topology.node_name("") is None


def test_bad_json_names_file_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b'[\n  {"Name": "x"\n  "Id": "y"}\n]')
    with pytest.raises(TopologyError) as caught:
        load_topology([path])
    # Line 3 starts at byte 17 (after "[\n" and '  {"Name": "x"\n'); its column 3 is byte 19.
    assert str(caught.value) == f"{path}: not valid JSON: Expecting ',' delimiter at line 3 column 3 (byte 19)"
    assert caught.value.path == str(path)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (42, "top level is a number"),
        ([1], "item 0: is a number, not an object"),
        (
            [{"Name": "n", "Driver": "overlay", "Options": ["encrypted"]}],
            "network 'n': Options is an array, expected an object",
        ),
        (
            [{"Name": "n", "Driver": "overlay", "Options": {"encrypted": True}}],
            "'encrypted' is a boolean, expected a string",
        ),
        ([{"Name": "n", "Driver": "overlay", "Peers": [{"IP": "300.1.1.1"}]}], "'300.1.1.1' is not an IP address"),
        ([overlay("n", "40x7", {})], "is not a list of VNIs"),
        ([overlay("n", "16777216", {})], "is not a list of VNIs"),
        ([{"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/33"}]}}], "subnet '10.0.0.0/33' is not a CIDR"),
        (
            [{"Spec": {"Name": "s"}, "Endpoint": {"VirtualIPs": {"Addr": "x"}}}],
            "service 's' Endpoint: VirtualIPs is an object",
        ),
    ],
)
def test_wrong_shape_is_one_clear_line(tmp_path: Path, document: object, fragment: str) -> None:
    path = write(tmp_path, "bad.json", document)
    with pytest.raises(TopologyError) as caught:
        load_topology([path])
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="No such file"):
        load_topology([tmp_path / "missing.json"])
    with pytest.raises(TopologyError, match=r"no \*\.json file"):
        load_topology([tmp_path])
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'["caf\xe9"]')
    with pytest.raises(TopologyError, match="not utf-8 text at byte 5"):
        load_topology([latin])
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TopologyError, match="nested too deeply"):
        load_topology([deep])


def test_utf16_output_of_windows_shells_is_read(tmp_path: Path) -> None:
    path = tmp_path / "utf16.json"
    path.write_bytes(json.dumps(OV1_VERBOSE).encode("utf-16"))
    assert load_topology([path]).network_named("ov1").vnis == (4097,)


def test_sample_metadata_agrees_with_its_raw_json() -> None:
    directories = sorted(p.parent for p in SAMPLES.glob("*/network-inspect.json"))
    if not directories:
        pytest.skip("no samples with Docker metadata")
    for directory in directories:
        topology = load_topology([directory])
        raw = json.loads((directory / "network-inspect.json").read_text())
        for item in raw:
            vni = int(item["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
            network = topology.network_by_vni(vni)
            assert network.name == item["Name"]
            assert network.declared_encrypted == ("encrypted" in item["Options"])
            for service, info in item.get("Services", {}).items():
                for task in info["Tasks"]:
                    found = topology.endpoint(item["Name"], task["EndpointIP"])
                    assert found.service == (service or task["Name"])
                    assert found.node == next(p["Name"] for p in item["Peers"] if p["IP"] == task["Info"]["Host IP"])


def test_well_known_services() -> None:
    assert well_known_service(6379) == "redis"
    assert well_known_service(3000) == "http"
    assert well_known_service(5432, "TCP") == "postgres"
    assert well_known_service(53, "udp") == "dns"
    assert well_known_service(6379, "udp") is None
    assert well_known_service(1) is None


DOCKER_KEYS = [
    "Name",
    "Id",
    "ID",
    "Driver",
    "IPAM",
    "Config",
    "Subnet",
    "Options",
    "Peers",
    "IP",
    "Services",
    "VIP",
    "Tasks",
    "EndpointIP",
    "Info",
    "Host IP",
    "Containers",
    "IPv4Address",
    "IPv6Address",
    "Ingress",
    "Scope",
    "Spec",
    "Endpoint",
    "VirtualIPs",
    "Addr",
    "NetworkID",
    "TaskTemplate",
    "encrypted",
    "encrypt",
    "com.docker.network.driver.overlay.vxlanid_list",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["10.0.0.2", "10.0.0.0/24", "4097", "4096,4097", "<nil>", "", "fd00::1/64", "300.1.2.3", "ingress"]
    )
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(DOCKER_KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("random") / "random.json"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS)
def test_random_json_loads_or_raises_topology_error(scratch: Path, document: object) -> None:
    check_loads_or_raises(scratch, json.dumps(document).encode())


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_random_bytes_load_or_raise_topology_error(scratch: Path, data: bytes) -> None:
    check_loads_or_raises(scratch, data)


def check_loads_or_raises(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        topology = load_topology([path])
    except TopologyError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        assert isinstance(topology, Topology)
        for endpoint in topology.endpoints:
            assert topology.endpoint(endpoint.network, endpoint.ip) is not None
