import os
from pathlib import Path

import pytest

from workers.settings import DEFAULT_CACHE_DIR


@pytest.fixture(scope="session")
def model_cache():
    """The model cache the servers of the end-to-end tests use (ENGINEHOUSE_CACHE_DIR, else
    ~/.cache/enginehouse): what they converted is found there, not converted again. Tests of
    converting itself use a fresh cache of their own."""
    configured = os.environ.get("ENGINEHOUSE_CACHE_DIR")
    return Path(configured).expanduser() if configured else DEFAULT_CACHE_DIR
