"""The architecture contracts of `make lint` also hold in `make test` (CI runs only the tests):
services never import each other, libs/common and the tools import no service
(pyproject.toml), and only repositories import asyncpg to run (importlinter-runtime.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.parametrize("config", ["pyproject.toml", "importlinter-runtime.toml"])
def test_the_import_contracts_hold(config):
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache", config], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:]
