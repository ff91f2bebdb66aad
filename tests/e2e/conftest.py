import pytest

from tests.server import start_server, stop_server


@pytest.fixture(scope="session")
def server():
    """The real server with the default model, started once for the end-to-end tests."""
    srv = start_server()
    yield srv
    stop_server(srv)
