"""What the scraper gets, and what synfin never does."""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.request

import pytest

from .servers import synfin_run

LABEL = re.compile(r'(\w+)="([^"]*)"')


@pytest.mark.bpf
def test_metrics_carry_no_address_pid_or_unlisted_port() -> None:
    allowed = 38100
    with synfin_run(f"--port-label={allowed}", "--ground-truth=host") as (_daemon, port):
        for target in (allowed, 38101):  # one allow-listed port, one not
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", target))
                listener.listen()
                client = socket.create_connection(("127.0.0.1", target))
                accepted, _ = listener.accept()
                client.close()
                accepted.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    values: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            for name, value in LABEL.findall(line):
                values.setdefault(name, set()).add(value)
    assert not {"pid", "comm", "address", "local", "remote", "saddr", "daddr"} & set(values)
    for name, seen in values.items():
        for value in seen:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                continue
            pytest.fail(f"label {name} carries an address: {value}")
    assert values["port"] == {str(allowed), "other"}
