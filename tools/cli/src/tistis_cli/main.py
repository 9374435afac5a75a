"""`tistis`: the operations command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer
from tistis_common.admin import load_tenant, read_fixture
from tistis_common.db import connect
from tistis_common.migrate import migrate as apply_migrations
from tistis_common.settings import Settings

from .common import secret_box
from .dlq import dlq_app
from .ops import doctor, jobs
from .secretkeys import secrets_app
from .tenants import ai_context_app, api_key_app, catalog_app, connection_app, tenant_app

app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, help="Operate the TIS TIS messaging platform."
)
app.add_typer(tenant_app, name="tenant")
app.add_typer(connection_app, name="connection")
app.add_typer(ai_context_app, name="ai-context")
app.add_typer(catalog_app, name="catalog")
app.add_typer(api_key_app, name="api-key")
app.add_typer(dlq_app, name="dlq")
app.add_typer(secrets_app, name="secrets")
app.command("doctor")(doctor)
app.command("jobs")(jobs)

def demo_fixture() -> Path:
    """Packaged in the wheel (tools/cli/pyproject.toml); in the workspace, the repository's."""
    packaged = Path(__file__).resolve().parent / "fixtures" / "esva-dental.yaml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[4] / "fixtures" / "esva-dental.yaml"


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
            tenant_id = await load_tenant(conn, read_fixture(path), secret_box())
        finally:
            await conn.close()
        typer.echo(f"tenant {tenant_id} loaded from {path}")

    asyncio.run(run())


@app.command("seed-demo")
def seed_demo() -> None:
    """Load the demo tenant `esva-dental` from fixtures/esva-dental.yaml."""
    load_tenant_cmd(demo_fixture())


def cli() -> None:
    """The `tistis` entry point: any usage error is one line on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
            app()
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {' '.join(str(message).split())}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    cli()
