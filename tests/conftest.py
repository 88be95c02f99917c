import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir():
    env = os.environ.get("HNNFIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    """The project's shared folder (recorded data, parameter files, reference outputs)."""
    path = _shared_dir()
    if not path.is_dir():
        raise RuntimeError(
            f"shared folder not found at {path}; set HNNFIT_SHARED to its location"
        )
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir):
    return shared_dir / "reference"
