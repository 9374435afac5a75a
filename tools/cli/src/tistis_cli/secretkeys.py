"""`tistis secrets`: the key that encrypts the connection secrets stored in the database."""

from __future__ import annotations

import typer
from tistis_common import admin
from tistis_common.secrets import generate_key

from .common import owner_db, run, secret_box

secrets_app = typer.Typer(no_args_is_help=True, help="Encryption key of the stored secrets.")


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a fresh key. Rotation: SECRETS_KEYS=<new>,<old> everywhere, `tistis secrets rotate`,
    then SECRETS_KEYS=<new>."""
    typer.echo(generate_key())


@secrets_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret under the first key of SECRETS_KEYS (and encrypt any stored
    before encryption existed)."""
    box = secret_box()

    async def go() -> int:
        async with owner_db() as conn:
            return await admin.reseal_secrets(conn, box)

    n = run(go())
    typer.echo(f"re-encrypted the secrets of {n} connection(s) under the current key")
