import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    "The checkout under test."
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    "Folder of the running interpreter's console scripts (nbdev_export, papermill, ...)."
    return Path(sys.executable).parent
