"""`tistis seed-demo` from the CLI installed as a package, outside the source tree (as in the
image): the wheels are built, installed with the locked dependencies into a venv of their own,
and run from an empty folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tistis_common.db import connect

ROOT = Path(__file__).resolve().parents[3]


def sh(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed_cli(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv not found (scripts/bootstrap.sh installs it)")
    work = tmp_path_factory.mktemp("wheel")
    for package in ("tistis-common", "tistis-cli"):
        sh(uv, "build", "--wheel", "--package", package, "-o", work / "dist")
    requirements = work / "requirements.txt"
    sh(uv, "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes", "--package",
       "tistis-cli", "-o", requirements)
    venv = work / "venv"
    sh(uv, "venv", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    sh(uv, "pip", "install", "--python", python, "-r", requirements)
    sh(uv, "pip", "install", "--python", python, "--no-deps", *sorted((work / "dist").glob("*.whl")))
    return venv / "bin" / "tistis"


class TestInstalledWheel:
    async def test_seed_demo_works_outside_the_source_tree(self, installed_cli, settings, tmp_path):
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "DATABASE_URL": settings.database_url,
               "MIGRATION_DATABASE_URL": settings.migration_database_url}
        out = await asyncio.to_thread(sh, installed_cli, "seed-demo", cwd=tmp_path, env=env)
        assert "loaded from" in out and str(ROOT) not in out  # the packaged fixture
        conn = await connect(settings.migration_database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM tenants WHERE slug = 'esva-dental'") == 1
        finally:
            await conn.close()
