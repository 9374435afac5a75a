"""Deleting patient files: by age (each tenant's retention, health data is not kept forever)
and on a patient's request (erasure). Rows first, in a short transaction, then the bytes, with
no connection held while the store works. Used by the scheduler's clock and the `tistis`
command."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tistis_common import media_files, metrics
from tistis_common.db import tenant_tx
from tistis_common.logging import get_logger
from tistis_common.storage import MediaStore

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)
BATCH = 500


async def expire_media(pool: asyncpg.Pool, store: MediaStore, tenant_id: uuid.UUID,
                       now: datetime, default_days: int) -> int:
    """Files of this tenant unused for longer than its retention: deleted. Returns how many."""
    deleted = 0
    while True:
        async with tenant_tx(pool, tenant_id) as conn:
            days = await media_files.retention_days(conn, tenant_id) or default_days
            keys = await media_files.delete_unused_since(conn, now - timedelta(days=days), BATCH)
        for key in keys:
            await store.delete(key)
        deleted += len(keys)
        metrics.MEDIA_DELETED.labels("retention").inc(len(keys))
        if len(keys) < BATCH:
            break
    if deleted:
        log.info("media.expired", count=deleted)
    return deleted


@dataclass(frozen=True)
class Erased:
    files: int
    messages: int


async def erase_patient(pool: asyncpg.Pool, store: MediaStore, tenant_id: uuid.UUID,
                        channel: str, platform_user_id: str) -> Erased:
    """Every file and message of one patient on one channel (the lead itself stays, with its
    score and appointments, unless the clinic removes it too)."""
    async with tenant_tx(pool, tenant_id) as conn:
        files = await media_files.files_of_patient(conn, channel, platform_user_id)
        await media_files.delete_files(conn, [f.id for f in files])
        messages = await media_files.delete_patient_messages(conn, channel, platform_user_id)
    for f in files:
        await store.delete(f.storage_key)
    metrics.MEDIA_DELETED.labels("erasure").inc(len(files))
    erased = Erased(len(files), messages)
    log.info("patient.erased", channel=channel, files=erased.files, messages=erased.messages)
    return erased
