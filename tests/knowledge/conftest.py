import os
from pathlib import Path

import pytest

from knowledge import load_index


def _shared_guide() -> Path:
    env = os.environ.get("MESHBOT_SHARED_GUIDE")
    return Path(env) if env else Path(__file__).parents[2].parent / "shared/guides/istio-troubleshooting.md"


@pytest.fixture(scope="session")
def guide_path() -> str:
    path = _shared_guide()
    if not path.is_file():
        pytest.skip(f"shared guide not found at {path} (set MESHBOT_SHARED_GUIDE)")
    return str(path)


@pytest.fixture(scope="session")
def guide_index(guide_path):
    return load_index([guide_path])


@pytest.fixture(scope="session")
def builtin_index():
    return load_index(())
