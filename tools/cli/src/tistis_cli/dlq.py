"""`tistis dlq list|show|replay|purge`: the dead-letter queues (see deadletters.py for how)."""

from __future__ import annotations

import json
import uuid
from enum import StrEnum

import typer
from tistis_common.admin import tenant_id_by_slug
from tistis_common.broker import connect

from . import deadletters as dl
from .common import CliError, fail, owner_db, run, settings
from .mgmt import discover_dlqs

dlq_app = typer.Typer(help="Dead-letter queues: list, show, replay, purge.", no_args_is_help=True)


class To(StrEnum):
    queue = "queue"
    exchange = "exchange"


QueueOpt = typer.Option(None, "--queue", "-q", help="A DLQ (or its queue) name; repeatable. Default: all")


def _dlq_names(queues: list[str] | None) -> list[str]:
    if queues:
        return list(dict.fromkeys(q if q.endswith(".dlq") else f"{q}.dlq" for q in queues))
    return discover_dlqs(settings(), dl.known_dlqs())


async def _tenant_filter(tenant: str | None) -> str | None:
    if tenant is None:
        return None
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        pass
    async with owner_db() as conn:
        tenant_id = await tenant_id_by_slug(conn, tenant)
    if tenant_id is None:
        raise CliError(f"no tenant {tenant!r} (a slug or a tenant id)")
    return str(tenant_id)


@dlq_app.command("list")
def dlq_list(queues: list[str] | None = QueueOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Per DLQ: how many, the oldest failure, and the error kinds. Removes nothing."""
    names = _dlq_names(queues)

    async def go() -> list[dict]:
        connection = await connect(settings().rabbitmq_url)
        try:
            rows = []
            for name in names:
                found = await dl.peek(connection, name)
                if found is None:
                    if queues:
                        raise CliError(f"no queue {name!r}")
                    continue
                count, letters = found
                oldest, kinds = dl.summarize(letters)
                rows.append({"queue": name, "count": count,
                             "oldest": oldest.isoformat() if oldest else None, "errors": kinds})
            return rows
        finally:
            await connection.close()

    rows = run(go())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        kinds = ", ".join(f"{k}×{n}" for k, n in r["errors"].items()) or "-"
        typer.echo(f"{r['queue']:<40} {r['count']:>6}  oldest={r['oldest'] or '-'}  errors: {kinds}")


@dlq_app.command("show")
def dlq_show(event_id: str, queues: list[str] | None = QueueOpt) -> None:
    """One dead letter by its event id: headers, error, attempts, body. Removes nothing."""
    names = _dlq_names(queues)

    async def go() -> list[dict]:
        connection = await connect(settings().rabbitmq_url)
        try:
            found = []
            for name in names:
                peeked = await dl.peek(connection, name)
                if peeked:
                    found += [d.describe() for d in peeked[1] if d.message_id == event_id]
            return found
        finally:
            await connection.close()

    found = run(go())
    if not found:
        fail(f"no dead letter with id {event_id}")
    typer.echo(json.dumps(found[0] if len(found) == 1 else found, indent=2, ensure_ascii=False))


def _matcher(event_id: str | None, error_type: str | None, tenant_id: str | None) -> dl.Matcher:
    def match(letter: dl.DeadLetter) -> bool:
        return ((event_id is None or letter.message_id == event_id)
                and (error_type is None or letter.error_type == error_type)
                and (tenant_id is None or letter.tenant_id == tenant_id))

    return match


def _selection(event_id: str | None, error_type: str | None, tenant: str | None, all_: bool) -> None:
    if not (event_id or error_type or tenant or all_):
        fail("say what: an event id, --error-type, --tenant, or --all")
    if all_ and (event_id or error_type or tenant):
        fail("--all cannot be combined with an event id or a filter")


@dlq_app.command("replay")
def dlq_replay(
    event_id: str | None = typer.Argument(None, help="The event id (message_id) of one dead letter"),
    queues: list[str] | None = QueueOpt,
    error_type: str | None = typer.Option(None, "--error-type", help="e.g. PermanentError, TimeoutError"),
    tenant: str | None = typer.Option(None, "--tenant", help="A tenant slug or id"),
    all_: bool = typer.Option(False, "--all", help="Every dead letter of the selected queues"),
    to: To = typer.Option(To.queue, "--to", help="queue: only the consumer that failed; "
                          "exchange: every queue bound to the original routing key"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed"),
) -> None:
    """Send dead letters back, keeping their event ids (idempotent consumers drop what they did)."""
    _selection(event_id, error_type, tenant, all_)
    names = _dlq_names(queues)

    async def go() -> dl.ReplayOutcome:
        match = _matcher(event_id, error_type, await _tenant_filter(tenant))
        total = dl.ReplayOutcome()
        connection = await connect(settings().rabbitmq_url)
        try:
            for name in names:
                outcome = await dl.replay(connection, name, match, target=to.value, dry_run=dry_run)
                total.replayed += outcome.replayed
                total.failed += outcome.failed
        finally:
            await connection.close()
        return total

    outcome = run(go())
    verb = "would replay" if dry_run else "replayed"
    for letter in outcome.replayed:
        where = (letter.original_queue if to is To.queue
                 else f"{dl.EXCHANGE}:{letter.original_routing_key}")
        typer.echo(f"{verb} {letter.message_id} from {letter.dlq} to {where} ({letter.error_type})")
    for letter, why in outcome.failed:
        typer.echo(f"FAILED {letter.message_id} from {letter.dlq}: {why} (kept in the DLQ)", err=True)
    typer.echo(f"{verb}: {len(outcome.replayed)}, failed: {len(outcome.failed)}")
    if event_id and not outcome.replayed and not outcome.failed:
        fail(f"no dead letter with id {event_id}", code=1)
    if outcome.failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    event_id: str | None = typer.Argument(None, help="Only this dead letter"),
    queues: list[str] | None = QueueOpt,
    error_type: str | None = typer.Option(None, "--error-type"),
    tenant: str | None = typer.Option(None, "--tenant"),
    all_: bool = typer.Option(False, "--all"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask"),
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    _selection(event_id, error_type, tenant, all_)
    names = _dlq_names(queues)
    what = event_id or ("all" if all_ else f"matching {error_type or ''} {tenant or ''}".strip())
    if not yes and not typer.confirm(f"delete {what} from {', '.join(names)}?", default=False):
        fail("not confirmed, nothing deleted", code=1)

    async def go() -> int:
        match = None if all_ else _matcher(event_id, error_type, await _tenant_filter(tenant))
        connection = await connect(settings().rabbitmq_url)
        try:
            return sum([await dl.purge(connection, name, match) for name in names])
        finally:
            await connection.close()

    typer.echo(f"purged: {run(go())}")
