"""`tistis doctor` and `tistis jobs`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import typer
from tistis_common.broker import connect
from tistis_common.db import connect as db_connect
from tistis_common.migrate import applied_versions, available, changed_since_applied
from tistis_common.topology import AI_INBOUND, ALL_QUEUES, DISPATCHER_OUTBOUND, QueueSpec

from . import deadletters as dl
from . import mgmt, repository
from .common import owner_db, run, secret_box, settings
from .tenants import check_connections, refused_refreshes

# The guide's job types, and the queue that does that job here.
JOB_QUEUES: dict[str, QueueSpec] = {
    "ai_response": AI_INBOUND,
    **{f"send_{channel.value}": spec for channel, spec in DISPATCHER_OUTBOUND.items()},
}


@dataclass
class Check:
    status: str  # ok | warn | FAIL
    what: str
    detail: str


async def _doctor() -> list[Check]:
    s = settings()
    checks: list[Check] = []
    # database: the app role answers, and the schema is current
    try:
        conn = await db_connect(s.database_url)
        await repository.ping(conn)
        await conn.close()
        owner = await db_connect(s.migration_database_url)
        try:
            applied = await applied_versions(owner)
            missing = [f"{m.version:04d}_{m.name}" for m in available() if m.version not in applied]
            detail = f"pending migrations: {', '.join(missing)}" if missing else "schema up to date"
            checks.append(Check("warn" if missing else "ok", "database", detail))
            changed = await changed_since_applied(owner)
            checks.append(Check("FAIL", "migrations", f"changed after they were applied: "
                                f"{', '.join(changed)}") if changed else
                          Check("ok", "migrations", "applied files unchanged (checksums match)"))
            slugs = await repository.tenant_slugs(owner)
        finally:
            await owner.close()
    except Exception as exc:
        checks.append(Check("FAIL", "database", f"{type(exc).__name__}: {exc}".splitlines()[0]))
        slugs = []
    # broker: reachable, every queue declared, depths
    try:
        connection = await connect(s.rabbitmq_url)
        try:
            checks.append(Check("ok", "broker", "connected"))
            for spec in ALL_QUEUES:
                ready = await dl.depth(connection, spec.name)
                dead = await dl.depth(connection, spec.dlq)
                if ready is None:
                    checks.append(Check("FAIL", f"queue {spec.name}", "missing (a service declares it)"))
                    continue
                status = "warn" if dead else "ok"
                checks.append(Check(status, f"queue {spec.name}", f"ready={ready} dead={dead or 0}"))
        finally:
            await connection.close()
    except Exception as exc:
        checks.append(Check("FAIL", "broker", f"{type(exc).__name__}: {exc}".splitlines()[0]))
    # tokens of every tenant's connections; first the refreshes the platform refused (the
    # token may still work for a while, the check below would not tell)
    if slugs:
        box = secret_box()
        async with owner_db() as conn, httpx.AsyncClient(timeout=10) as http:
            for slug in slugs:
                for channel, account, detail in await refused_refreshes(conn, slug):
                    checks.append(Check("FAIL", f"token refresh {slug}/{channel}/{account}", detail))
                for channel, account, status, detail in await check_connections(
                        conn, http, box, slug, None):
                    mapped = {"ok": "ok", "bad": "FAIL", "unknown": "warn"}[status]
                    checks.append(Check(mapped, f"token {slug}/{channel}/{account}", detail))
    return checks


def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
    """Broker, database, every connection's token, queue depths; exit 1 if something failed."""
    checks = run(_doctor())
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            typer.echo(f"{c.status:<5} {c.what:<45} {c.detail}")
    if any(c.status == "FAIL" for c in checks):
        raise typer.Exit(1)


async def _jobs() -> list[dict]:
    s = settings()
    try:
        sampled = mgmt.queues(s)
    except httpx.HTTPError:
        sampled = {}
    connection = await connect(s.rabbitmq_url)
    rows = []
    try:
        for job, spec in JOB_QUEUES.items():
            retrying = 0
            for delay in s.retry_delays:
                retrying += await dl.depth(connection, spec.retry_queue(delay)) or 0
            unacked = sampled.get(spec.name, {}).get("messages_unacknowledged")
            rows.append({
                "job_type": job, "queue": spec.name,
                "queued": await dl.depth(connection, spec.name) or 0,
                "in_flight": unacked,
                "retrying": retrying,
                "dead": await dl.depth(connection, spec.dlq) or 0,
            })
    finally:
        await connection.close()
    return rows


def jobs(as_json: bool = typer.Option(False, "--json")) -> None:
    """The guide's job types: queued, in flight, retrying, dead (from the broker's queues)."""
    rows = run(_jobs())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'job type':<16} {'queued':>7} {'in flight':>10} {'retrying':>9} {'dead':>6}  queue")
    for r in rows:
        in_flight = "?" if r["in_flight"] is None else r["in_flight"]
        typer.echo(f"{r['job_type']:<16} {r['queued']:>7} {in_flight:>10} {r['retrying']:>9} "
                   f"{r['dead']:>6}  {r['queue']}")
