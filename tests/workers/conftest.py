import pytest

from workers.settings import WorkerSettings


@pytest.fixture(scope="session")
def model_cache():
    """The model cache the servers of the end-to-end tests use (ENGINEHOUSE_CACHE_DIR, else
    ~/.cache/enginehouse): what they converted is found there, not converted again. Tests of
    converting itself use a fresh cache of their own."""
    return WorkerSettings.model_fields["cache_dir"].get_default(call_default_factory=True)
