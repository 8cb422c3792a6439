import os
from pathlib import Path

import pytest

from knowledge import load_index


def shared_guides() -> Path | None:
    """The shared guides folder: $MESHBOT_SHARED_GUIDES, or shared/guides beside the checkout or above it."""
    env = os.environ.get("MESHBOT_SHARED_GUIDES")
    if env:
        return Path(env)
    legacy = os.environ.get("MESHBOT_SHARED_GUIDE")  # the old guide's file
    if legacy:
        return Path(legacy).parent
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "guides").is_dir():
            return parent / "shared" / "guides"
    return None


def _need(name: str) -> str:
    folder = shared_guides()
    path = folder / name if folder else None
    if path is None or not path.exists():
        pytest.skip(f"shared guide {name} not found (set MESHBOT_SHARED_GUIDES)")
    return str(path)


@pytest.fixture(scope="session")
def guide_path() -> str:
    return _need("istio-troubleshooting.md")


@pytest.fixture(scope="session")
def modern_path() -> str:
    return _need("istio-common-problems")


@pytest.fixture(scope="session")
def guide_index(guide_path):
    return load_index([guide_path])


@pytest.fixture(scope="session")
def both_index(guide_path, modern_path):
    return load_index([guide_path, modern_path])


@pytest.fixture(scope="session")
def builtin_index():
    return load_index(())
