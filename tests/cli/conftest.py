"""Fixtures of the lmtp-send tests."""
import pytest

from clitest import Fake


@pytest.fixture
def fakes(tmp_path):
    """fakes(*args, **kw) starts a fake-lmtp; every one started is stopped after the test."""
    started = []

    def start(*args, **kw):
        server = Fake(tmp_path / f"fake{len(started)}", *args, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
