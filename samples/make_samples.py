"""Write the sample captures and their Docker metadata: four Docker Swarm overlay stories.

    python samples/make_samples.py [--out DIR]     (default: beside this script)

Every capture is what ``tcpdump -i eth0`` records on node host01 (172.17.0.71)
of a two-node Swarm (host02 is 172.17.0.74); beside it are the JSON files
``docker network inspect --verbose`` (run on host01) and ``docker service
inspect`` print for its networks and services. Time stamps and random values
are fixed, so two runs write the same bytes. See README.md for the stories.
"""

from __future__ import annotations

import argparse
import calendar
import sys
import time
from collections.abc import Callable
from pathlib import Path

from synth import apps
from synth.entropy import Entropy
from synth.files import LINKTYPE_LINUX_SLL2, gzip_bytes, pcap, pcapng, sll2_frames
from synth.swarm import Swarm
from synth.wire import Clock, Interface, OverlayLink, TcpConversation, Underlay, overlay_mss

HERE = Path(__file__).resolve().parent
ETH0_INDEX = 2  # eth0's interface index on a typical VM: lo is 1
KEY_TAGS = (47, 48)
"""Lamport times of the Swarm's data-path keys before and after the rotation in swarm-encrypted."""
SECURE_KEY_TAG = 52
"""The data-path key of the (later) Swarm in secure-vs-insecure."""
APP1_REDIS_PASSWORD = "Rd!s-app1-Pr0d-2024"
APP1_ADMIN = ("admin", "Sw4rm-Adm1n!")


def epoch_ns(text: str) -> int:
    """Nanoseconds since the epoch of a UTC time written ``YYYY-MM-DDTHH:MM:SS.ffffff``."""
    whole, fraction = text.split(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


class Story:
    """One sample: a Swarm, host01's underlay, and the files written for them."""

    def __init__(self, name: str, created: str, start: str) -> None:
        self.entropy = Entropy(f"vxlaninspect-samples/{name}")
        self.swarm = Swarm(self.entropy.child("swarm"), created=created)
        self.host01 = self.swarm.add_node("host01", "172.17.0.71")
        self.host02 = self.swarm.add_node("host02", "172.17.0.74")
        self.clock = Clock(epoch_ns(start))
        self.underlay = Underlay(self.host01.node, self.clock, self.entropy.child("underlay"))

    def conversation(
        self, link: OverlayLink, client: Interface, server: Interface, port: int, *, mss: int
    ) -> TcpConversation:
        return TcpConversation(
            link, client, server, port, self.entropy.child(f"tcp/{len(self.underlay.frames)}"), mss=mss
        )

    def files(self) -> dict[str, bytes]:
        return {
            "capture.pcap": pcap(self.underlay.frames),
            "network-inspect.json": self.swarm.network_inspect(on=self.host01).encode(),
            "service-inspect.json": self.swarm.service_inspect().encode(),
        }


def app1(name: str, start: str, *, encrypted: bool) -> Story:
    """curl through the routing mesh to a web task that counts visits in Redis over app1-network."""
    story = Story(name, "2024-03-11T16:41:07.104385917Z", start)
    swarm, host01, host02 = story.swarm, story.host01, story.host02
    ingress = swarm.add_network("ingress", 4096, "10.0.0.0/24", ingress=True)
    app = swarm.add_network("app1-network", 4097, "10.0.1.0/24", {"encrypted": ""} if encrypted else {})
    sandbox = swarm.add_load_balancer(ingress, host01, "10.0.0.2")
    swarm.add_load_balancer(ingress, host02, "10.0.0.3")
    swarm.add_load_balancer(app, host01, "10.0.1.4")
    swarm.add_load_balancer(app, host02, "10.0.1.7")
    redis = swarm.add_service("app1_redis", "app1", _image("redis:7.2.4-alpine", story), {app: "10.0.1.2"})
    web = swarm.add_service(
        "app1_web",
        "app1",
        _image("registry.example.com/app1/web:1.4.2", story),
        {ingress: "10.0.0.4", app: "10.0.1.5"},
        ((3000, 3000),),
    )
    redis_task = swarm.add_task(redis, host01, {app: "10.0.1.3"})
    web_task = swarm.add_task(web, host02, {ingress: "10.0.0.5", app: "10.0.1.6"})

    underlay = story.underlay
    underlay.use_key(host01.node, host02.node, KEY_TAGS[0])
    underlay.use_key(host02.node, host01.node, KEY_TAGS[0])
    ingress_link = OverlayLink(underlay, ingress.vni, encrypted=False)
    app_link = OverlayLink(underlay, app.vni, encrypted=app.encrypted_by_docker)

    underlay.arp(host01.node, host02.node)
    story.clock.advance_us(2_310)
    store = story.conversation(
        app_link, swarm.interface(web_task, app), swarm.interface(redis_task, app), 6379, mss=overlay_mss(encrypted)
    )
    store.open()
    store.send("client", apps.resp_command("AUTH", APP1_REDIS_PASSWORD), 164)
    store.send("server", apps.resp_ok(), 88)
    store.ack("client", 40_120)

    hostname = web_task.container_id[:12]
    client_ip, web_if = sandbox.ip, swarm.interface(web_task, ingress)
    visits: dict[str, int] = {}
    for number in range(1, 4):
        if encrypted and number == 3:
            underlay.use_key(host01.node, host02.node, KEY_TAGS[1])
            underlay.use_key(host02.node, host01.node, KEY_TAGS[1])
        story.clock.advance_us(1_180_000 + 97_000 * number)
        http = story.conversation(ingress_link, sandbox, web_if, 3000, mss=overlay_mss(False))
        http.open()
        http.send("client", apps.curl_get("host01:3000", basic_auth=APP1_ADMIN if number == 2 else None), 71)
        http.ack("server", 24)
        visits[client_ip] = visits.get(client_ip, 0) + 1
        store.send("client", apps.resp_command("HINCRBY", "ip", client_ip, "1"), 930)
        store.send("server", apps.resp_integer(visits[client_ip]), 118)
        store.send("client", apps.resp_command("HGETALL", "ip"), 64)
        store.send("server", apps.resp_bulk_array([x for ip, n in visits.items() for x in (ip, str(n))]), 102)
        store.send("client", apps.resp_command("INCR", "hits"), 58)
        store.send("server", apps.resp_integer(number), 97)
        rows = "".join(f"<li>{ip}: {n}</li>" for ip, n in visits.items())
        page = f"<h1>Hello from {hostname}!</h1><p>This page has been visited {number} times.</p><ul>{rows}</ul>"
        http.send("server", apps.express_response(page, story.clock.now_ns), 410)
        http.ack("client", 39)
        http.close("client", 133)
        http.close("server", 52)
        http.ack("client", 36)
        store.ack("client", 38_700)

    story.clock.advance_us(2_460_000)
    store.send("client", apps.resp_command("QUIT"), 0)
    store.send("server", apps.resp_ok(), 91)
    store.close("server", 27)
    store.close("client", 140)
    store.ack("server", 48)
    return story


def swarm_plaintext() -> dict[str, bytes]:
    story = app1("swarm-plaintext", "2024-03-12T09:30:00.118734", encrypted=False)
    files = story.files()
    files["capture-sll2.pcap"] = pcap(
        sll2_frames(story.underlay.frames, story.host01.node, ETH0_INDEX), LINKTYPE_LINUX_SLL2
    )
    files["capture.pcapng"] = pcapng(story.underlay.frames, "eth0", "vxlaninspect samples/make_samples.py")
    files["capture.pcap.gz"] = gzip_bytes(files["capture.pcap"])
    return files


def swarm_encrypted() -> dict[str, bytes]:
    return app1("swarm-encrypted", "2024-03-12T10:15:00.402117", encrypted=True).files()


def secure_vs_insecure() -> dict[str, bytes]:
    """One nginx service on an unencrypted and an encrypted network; curl over each."""
    story = Story("secure-vs-insecure", "2024-03-13T13:58:40.771204538Z", "2024-03-13T14:02:11.530290")
    swarm, host01, host02 = story.swarm, story.host01, story.host02
    insecure = swarm.add_network("insecure", 4098, "10.0.2.0/24")
    secure = swarm.add_network("secure", 4099, "10.0.3.0/24", {"encrypted": ""})
    for network, third in ((insecure, 2), (secure, 3)):
        swarm.add_load_balancer(network, host02, f"10.0.{third}.6")
        swarm.add_load_balancer(network, host01, f"10.0.{third}.7")
    nginx = swarm.add_service(
        "web_nginx", "web", _image("nginx:1.25.4-alpine", story), {insecure: "10.0.2.2", secure: "10.0.3.2"}
    )
    client = swarm.add_service(
        "web_client", "web", _image("curlimages/curl:8.6.0", story), {insecure: "10.0.2.4", secure: "10.0.3.4"}
    )
    nginx_task = swarm.add_task(nginx, host02, {insecure: "10.0.2.3", secure: "10.0.3.3"})
    client_task = swarm.add_task(client, host01, {insecure: "10.0.2.5", secure: "10.0.3.5"})

    underlay = story.underlay
    underlay.use_key(host01.node, host02.node, SECURE_KEY_TAG)
    underlay.use_key(host02.node, host01.node, SECURE_KEY_TAG)
    underlay.arp(host01.node, host02.node)
    for network in (insecure, secure):
        link = OverlayLink(underlay, network.vni, encrypted=network.encrypted_by_docker)
        vip = nginx.vips[network.name]
        for path, status in (("/", 200), ("/status", 404)):
            story.clock.advance_us(2_040_000)
            http = story.conversation(
                link,
                swarm.interface(client_task, network),
                swarm.interface(nginx_task, network),
                80,
                mss=overlay_mss(network.encrypted_by_docker),
            )
            http.open()
            http.send("client", apps.curl_get(vip, path), 66)
            http.ack("server", 21)
            http.send("server", apps.nginx_response(status, story.clock.now_ns), 187)
            http.ack("client", 33)
            http.close("client", 121)
            http.close("server", 47)
            http.ack("client", 35)
    return story.files()


def misconfigured() -> dict[str, bytes]:
    """``payments`` is declared encrypted yet crosses in cleartext; ``billing`` asked with a key Docker ignores."""
    story = Story("misconfigured", "2024-02-27T11:05:19.338812046Z", "2024-03-14T08:47:52.007731")
    swarm, host01, host02 = story.swarm, story.host01, story.host02
    payments = swarm.add_network("payments", 4100, "10.0.4.0/24", {"encrypted": ""})
    billing = swarm.add_network("billing", 4101, "10.0.5.0/24", {"encrypt": "true"})
    for network, third in ((payments, 4), (billing, 5)):
        swarm.add_load_balancer(network, host01, f"10.0.{third}.6")
        swarm.add_load_balancer(network, host02, f"10.0.{third}.7")
    checkout = swarm.add_service(
        "shop_checkout", "shop", _image("registry.example.com/shop/checkout:2.7.1", story), {payments: "10.0.4.2"}
    )
    api = swarm.add_service(
        "payments_api", "payments", _image("registry.example.com/payments/api:3.1.0", story), {payments: "10.0.4.4"}
    )
    worker = swarm.add_service(
        "billing_worker", "billing", _image("registry.example.com/billing/worker:0.9.3", story), {billing: "10.0.5.2"}
    )
    redis = swarm.add_service("billing_redis", "billing", _image("redis:7.2.4-alpine", story), {billing: "10.0.5.4"})
    checkout_task = swarm.add_task(checkout, host01, {payments: "10.0.4.3"})
    api_task = swarm.add_task(api, host02, {payments: "10.0.4.5"})
    worker_task = swarm.add_task(worker, host01, {billing: "10.0.5.3"})
    redis_task = swarm.add_task(redis, host02, {billing: "10.0.5.5"})

    underlay = story.underlay
    underlay.arp(host01.node, host02.node)
    # CVE-2023-28840: the rule that marks this VNI's VXLAN for IPsec is missing, so it leaves in cleartext;
    # the containers' MTU still makes room for ESP.
    payments_link = OverlayLink(underlay, payments.vni, encrypted=False)
    charges = [
        {
            "amount": 4999,
            "currency": "EUR",
            "card_number": "4111111111111111",
            "exp_month": 12,
            "exp_year": 2027,
            "cvc": "123",
            "order": "A-100231",
        },
        {
            "amount": 1250,
            "currency": "EUR",
            "card_number": "5555555555554444",
            "exp_month": 3,
            "exp_year": 2026,
            "cvc": "737",
            "order": "A-100232",
        },
    ]
    for number, charge in enumerate(charges, start=1):
        story.clock.advance_us(1_530_000)
        http = story.conversation(
            payments_link,
            swarm.interface(checkout_task, payments),
            swarm.interface(api_task, payments),
            8080,
            mss=overlay_mss(True),
        )
        http.open()
        http.send(
            "client", apps.requests_post("payments_api:8080", "/v1/charges", charge, "pay_live_7f3c2a9e1b4d6a0c"), 212
        )
        http.ack("server", 25)
        answer = {
            "id": f"ch_000{100230 + number}",
            "status": "succeeded",
            "amount": charge["amount"],
            "last4": charge["card_number"][-4:],
        }
        http.send("server", apps.gunicorn_json("201 CREATED", answer, story.clock.now_ns), 6_840)
        http.ack("client", 41)
        http.close("client", 310)
        http.close("server", 55)
        http.ack("client", 34)

    billing_link = OverlayLink(underlay, billing.vni, encrypted=billing.encrypted_by_docker)
    story.clock.advance_us(870_000)
    store = story.conversation(
        billing_link,
        swarm.interface(worker_task, billing),
        swarm.interface(redis_task, billing),
        6379,
        mss=overlay_mss(False),
    )
    store.open()
    exchanges = [
        (
            (
                "HSET",
                "invoice:2024-0042",
                "customer",
                "acme-gmbh",
                "amount",
                "1299.00",
                "iban",
                "DE89370400440532013000",
            ),
            apps.resp_integer(3),
        ),
        (("EXPIRE", "invoice:2024-0042", "86400"), apps.resp_integer(1)),
        (("LPUSH", "billing:outbox", "invoice:2024-0042"), apps.resp_integer(1)),
    ]
    for command, reply in exchanges:
        store.send("client", apps.resp_command(*command), 240)
        store.send("server", reply, 94)
    store.ack("client", 40_300)
    store.send("client", apps.resp_command("QUIT"), 1_200)
    store.send("server", apps.resp_ok(), 88)
    store.close("server", 24)
    store.close("client", 131)
    store.ack("server", 45)
    return story.files()


def _image(reference: str, story: Story) -> str:
    """An image reference pinned by digest, as ``docker stack deploy`` resolves it."""
    return f"{reference}@sha256:{story.entropy.child(reference).hex(64)}"


STORIES: dict[str, Callable[[], dict[str, bytes]]] = {
    "swarm-plaintext": swarm_plaintext,
    "swarm-encrypted": swarm_encrypted,
    "secure-vs-insecure": secure_vs_insecure,
    "misconfigured": misconfigured,
}


def write_samples(out: Path) -> list[Path]:
    """Write every story under ``out``; return the files written, relative to ``out``."""
    written = []
    for story, build in STORIES.items():
        directory = out / story
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in build().items():
            (directory / name).write_bytes(data)
            written.append(Path(story) / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="directory to write the stories into (default: %(default)s)"
    )
    arguments = parser.parse_args(argv)
    for path in write_samples(arguments.out):
        print(arguments.out / path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
