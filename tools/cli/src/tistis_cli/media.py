"""`tistis erase-patient`: a patient's files and messages, erased on their request."""

from __future__ import annotations

import typer
from tistis_common.db import create_pool
from tistis_common.events import Channel
from tistis_common.retention import erase_patient
from tistis_common.storage import open_store

from .common import CliError, owner_db, resolve_tenant, run, settings


def erase_patient_cmd(
    tenant: str = typer.Option(..., help="the tenant's slug"),
    channel: Channel = typer.Option(..., help="the channel the patient writes on"),
    user: str = typer.Option(..., help="the patient's platform user id (wa_id, PSID, ...)"),
    yes: bool = typer.Option(False, "--yes", help="erase without asking"),
) -> None:
    """Delete every file a patient sent (from the media store too) and all their messages on
    one channel. The lead (score, appointments) stays."""
    if not yes:
        typer.confirm(f"erase the files and messages of {user} on {channel.value}?", abort=True)

    async def go() -> tuple[int, int]:
        async with owner_db() as conn:
            tenant_id = await resolve_tenant(conn, tenant)
        s = settings()
        pool = await create_pool(s.database_url, min_size=1, max_size=2)
        store = await open_store(s)
        try:
            erased = await erase_patient(pool, store, tenant_id, channel.value, user)
        finally:
            await store.close()
            await pool.close()
        if not erased.files and not erased.messages:
            raise CliError(f"nothing stored for {user} on {channel.value} in {tenant}")
        return erased.files, erased.messages

    files, messages = run(go())
    typer.echo(f"erased {files} file(s) and {messages} message(s) of {user} on {channel.value}")
