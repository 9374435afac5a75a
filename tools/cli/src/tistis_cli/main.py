"""`tistis`: the operations command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from tistis_common.admin import load_tenant, read_fixture
from tistis_common.db import connect
from tistis_common.migrate import migrate as apply_migrations
from tistis_common.settings import Settings

app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, help="Operate the TIS TIS messaging platform."
)

DEMO_FIXTURE = Path(__file__).resolve().parents[4] / "fixtures" / "esva-dental.yaml"


@app.command()
def migrate() -> None:
    """Apply the SQL migrations that are missing (safe to run from several replicas)."""
    applied = asyncio.run(apply_migrations(Settings().migration_database_url))
    typer.echo(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@app.command("load-tenant")
def load_tenant_cmd(path: Path = typer.Argument(..., exists=True, readable=True)) -> None:
    """Create or update a tenant with its connections, AI context, branches, services and FAQs."""

    async def run() -> None:
        conn = await connect(Settings().migration_database_url)
        try:
            tenant_id = await load_tenant(conn, read_fixture(path))
        finally:
            await conn.close()
        typer.echo(f"tenant {tenant_id} loaded from {path}")

    asyncio.run(run())


@app.command("seed-demo")
def seed_demo() -> None:
    """Load the demo tenant `esva-dental` from fixtures/esva-dental.yaml."""
    load_tenant_cmd(DEMO_FIXTURE)


if __name__ == "__main__":
    app()
