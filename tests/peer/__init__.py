"""A scripted remote peer for synfin's tests, in the spirit of packetdrill (see README.md)."""

import pytest

# Plain asserts in the shared checks then report the values they compared.
pytest.register_assert_rewrite("tests.peer.checks", "tests.peer.observe")
