"""Shared test set-up.

- nbgrader shells out to `jupyter` and `alembic`: the interpreter's own bin directory goes first on
  PATH so those resolve to this environment whatever shell started pytest.
- Two CPU threads at most, as on the CI machine; one per worker under `pytest -n 2`, so two
  workers do not fight over two cores.
"""

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI runs on a fresh clone (no hypothesis database): make its property tests deterministic there,
# so a red CI always means a reproducible failure. Local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
_BIN = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(_BIN + os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def repo_root() -> Path:
    return REPO
