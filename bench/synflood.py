"""synfin's memory under a SYN flood of a million distinct half-open connections.

    sudo .venv/bin/python bench/synflood.py [--syns 1000000] [--max-sockets 65536]

Inside two network namespaces (a HostPair), a raw socket in the client namespace sends SYNs
from a million distinct (address, port) pairs of the benchmarking range 198.18.0.0/15 to a
listener in the server namespace that keeps real request sockets (syncookies off, a large
backlog); the client namespace drops the SYN-ACKs, so every request stays half-open until the
kernel gives up on it. `synfin run` watches; its RSS is sampled during the flood and its socket
map's entries, capacity and evictions are read from its own metrics. Writes raw JSON.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observer import memory_mb, start_synfin_run  # noqa: E402

from synfin.kernel.namespaces import entered  # noqa: E402
from synfin.lab.hosts import HostPair, ip  # noqa: E402
from synfin.lab.plays import nft  # noqa: E402
from synfin.lab.storms import tcp_ext  # noqa: E402

METRICS_PORT = 19979
PORT = 8443
SOURCES = IPv4Address("198.18.0.0")  # RFC 2544 benchmarking range, routed only in the lab
PORTS_PER_SOURCE = 50000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(source: IPv4Address, sport: int, destination: IPv4Address, sequence: int) -> bytes:
    """An IPv4 packet carrying one TCP SYN; the kernel fills the IP length and checksum."""
    tcp = struct.pack("!HHIIBBHHH", sport, PORT, sequence, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = source.packed + destination.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, 20)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0,
        source.packed, destination.packed,
    )  # fmt: skip
    return header + tcp


def metrics() -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("synfin_bpf_map", "synfin_tcp_connections{")):
            key, value = line.rsplit(" ", 1)
            values[key] = values.get(key, 0.0) + float(value)
    return values


def synfin_maps() -> dict[str, dict[str, int]]:
    """synfin's BPF maps as bpftool sees them: capacity, locked kernel memory, live entries."""
    maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    # This bpftool lists no owning pids; synfin's maps share the BTF of its one compiled object
    # (`transitions` is in every tier).
    btf = next(m["btf_id"] for m in maps if m["name"] == "transitions")
    owned = [m for m in maps if m.get("btf_id") == btf]
    report = {}
    for found in owned:
        entry = {"max_entries": found["max_entries"], "bytes_memlock": found["bytes_memlock"]}
        if found["name"] in ("half_open", "sockets", "timewaits"):  # hash maps: live entries
            dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(found["id"])],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
            entry["entries"] = len(json.loads(dump))
        report[found["name"]] = entry
    return report


def flood(hosts: HostPair, count: int) -> float:
    destination = IPv4Address(hosts.server.ipv4)
    with entered(hosts.client.namespace):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    began = time.monotonic()
    with raw:
        for number in range(count):
            source = SOURCES + number // PORTS_PER_SOURCE
            sport = 10000 + number % PORTS_PER_SOURCE
            raw.sendto(syn(source, sport, destination, number), (str(destination), 0))
    return time.monotonic() - began


def half_open_at_server(hosts: HostPair) -> int:
    listing = subprocess.run(
        ["ip", "netns", "exec", hosts.server.namespace, "ss", "-Htan", "state", "syn-recv"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return len(listing.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syns", type=int, default=1_000_000)
    parser.add_argument("--max-sockets", type=int, default=65536)
    parser.add_argument("--probe-tier", default="auto", choices=("auto", "lean", "timers"))
    parser.add_argument("--raw", type=Path, default=ROOT / "bench" / "results" / "synflood.json")
    args = parser.parse_args()

    with HostPair(prefix="synflood") as hosts:
        hosts.server.sysctl("net.ipv4.tcp_syncookies", "0")
        hosts.server.sysctl("net.ipv4.tcp_max_syn_backlog", "1048576")
        hosts.server.sysctl("net.core.somaxconn", "1048576")
        ip(
            "route",
            "add",
            "198.18.0.0/15",
            "via",
            hosts.client.ipv4,
            namespace=hosts.server.namespace,
        )
        nft(
            hosts.client.namespace,
            "add table inet synflood\n"
            "add chain inet synflood in { type filter hook input priority 0; }\n"
            f"add rule inet synflood in tcp sport {PORT} drop\n",
        )
        listener = hosts.server.socket()
        listener.bind((hosts.server.ipv4, PORT))
        listener.listen(1048576)

        daemon = start_synfin_run(
            METRICS_PORT, f"--max-sockets={args.max_sockets}", f"--probe-tier={args.probe_tier}"
        )
        samples: list[float] = []
        flooding = threading.Event()
        flooding.set()

        def sample() -> None:
            while flooding.is_set():
                samples.append(memory_mb(daemon.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        try:
            before = metrics()
            ext_before = tcp_ext(hosts.server.namespace)
            sampler.start()
            seconds = flood(hosts, args.syns)
            time.sleep(2)
            after = metrics()
            maps = synfin_maps()
            ext_after = tcp_ext(hosts.server.namespace)
            syn_recv = half_open_at_server(hosts)
            flooding.clear()
            sampler.join()
        finally:
            flooding.clear()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            listener.close()

    report = {
        "syns_sent": args.syns,
        "send_seconds": round(seconds, 1),
        "max_sockets": args.max_sockets,
        "probe_tier": args.probe_tier,
        "rss_mb": {"first": samples[0], "last": samples[-1], "max": max(samples)},
        "metrics_before": before,
        "metrics_after": after,
        "synfin_maps": maps,
        "synfin_maps_bytes_memlock": sum(m["bytes_memlock"] for m in maps.values()),
        "server_syn_recv": syn_recv,
        "server_tcpext_delta": {
            name: ext_after[name] - ext_before[name]
            for name in (
                "ListenOverflows",
                "ListenDrops",
                "TCPReqQFullDrop",
                "TCPReqQFullDoCookies",
            )
            if name in ext_after
        },
    }
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
