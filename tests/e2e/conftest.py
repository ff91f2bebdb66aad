import openai
import pytest

from tests.server import start_server, stop_server


@pytest.fixture(scope="session")
def server():
    """The real server with the default model, started once for the end-to-end tests."""
    srv = start_server()
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server):
    """The real `openai` client on the server; no retries, so errors are seen as they are."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
