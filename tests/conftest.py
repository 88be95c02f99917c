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


def _load_bench(name):
    """Import ``bench/<name>.py`` as the module ``bench_<name>``.

    The bench folder goes on ``sys.path`` (the scripts import their
    siblings, as they do when run as ``python bench/<name>.py``), and the
    module is registered (dataclasses look their module up).
    """
    import importlib.util
    import sys

    folder = str(REPO / "bench")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_bench():
    """A function importing a script of ``bench/`` by name (see :func:`_load_bench`)."""
    return _load_bench
