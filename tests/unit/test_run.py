"""`synfin run` as an operator meets it: TLS and basic auth, capabilities, signals, settings."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from synfin.cli.main import main


@pytest.mark.parametrize("address", ["9977", "localhost:", "1.2.3.4:99999", "host:port"])
def test_bad_listen_addresses(address: str) -> None:
    result = CliRunner().invoke(main, ["run", "--listen-address", address, "--check"])
    assert result.exit_code == 1
    assert f"listen address {address!r} is not HOST:PORT" in result.output
