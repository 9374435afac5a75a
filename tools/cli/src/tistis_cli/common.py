"""Shared bits of the `tistis` commands: settings, connections, one-line failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import aio_pika
import typer
from tistis_common.admin import tenant_id_by_slug
from tistis_common.db import SLUG, connect
from tistis_common.secrets import SecretBox, SecretKeyError
from tistis_common.settings import Settings

from .repository import DATABASE_ERROR

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")


class CliError(Exception):
    """A wrong argument or an unmet precondition: one line to the operator, exit 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    return Settings()


def secret_box() -> SecretBox:
    """Seals and opens the connection secrets with SECRETS_KEYS."""
    return SecretBox(settings().secrets_keys)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a command's coroutine; known failures become one line and a non-zero exit."""
    try:
        return asyncio.run(coro)
    except (CliError, SecretKeyError) as exc:
        fail(str(exc))
    except (OSError, DATABASE_ERROR, aio_pika.exceptions.AMQPError) as exc:
        fail(f"{type(exc).__name__}: {exc}".splitlines()[0], code=1)


@asynccontextmanager
async def owner_db() -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings().migration_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def resolve_tenant(conn: asyncpg.Connection, slug: str) -> uuid.UUID:
    if not SLUG.fullmatch(slug):
        raise CliError(f"bad tenant slug {slug!r} (lowercase letters, digits, dashes)")
    tenant_id = await tenant_id_by_slug(conn, slug)
    if tenant_id is None:
        raise CliError(f"no tenant with slug {slug!r}")
    return tenant_id
