"""Exposure by default: what a local network or a patient attacker can reach or hold.
  - half-sent request bodies (headers, then a trickle or nothing: the "slow POST" of OWASP,
    https://owasp.org/www-community/attacks/Slow_HTTP_Post) are answered 408 and closed, on the
    webhooks as on the operator API, and many at once do not stall the ingress;
  - SECURITY DEFINER functions put pg_temp last in their search_path, so a temporary table of
    the caller cannot shadow the tables they read with their owner's rights (PostgreSQL docs,
    CREATE FUNCTION, "Writing SECURITY DEFINER Functions Safely",
    https://www.postgresql.org/docs/current/sql-createfunction.html);
  - `make run` binds loopback; the containers keep 0.0.0.0."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from tistis_common.settings import Settings
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress

ROOT = Path(__file__).resolve().parents[2]
BODY_TIMEOUT = 1.0


@pytest.fixture
async def ingress(settings):
    async with running(start_ingress, settings, http_body_timeout_seconds=BODY_TIMEOUT,
                       cron_secret="exposure-cron") as runtime:
        yield runtime


async def half_sent(port: int, path: str, sent: bytes = b'{"object": "whatsapp_busi',
                    declared: int = 4096) -> tuple[bytes, float]:
    """Headers and part of the body, then silence: what came back and when the server closed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer exposure-cron\r\nContent-Length: {declared}\r\n\r\n"
                 .encode() + sent)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=BODY_TIMEOUT + 10)  # until closed
    except TimeoutError:
        answer = b""
    finally:
        writer.close()
    return answer, loop.time() - started


class TestHalfSentBodies:
    async def test_a_half_sent_body_is_408_and_closed_on_every_door(self, ingress, make_tenant,
                                                                    attack):
        tenant = await make_tenant()
        paths = [f"/api/webhook/{channel}/{tenant.slug}"
                 for channel in ("whatsapp", "instagram", "facebook", "tiktok")]
        paths += ["/api/webhook", f"/api/v1/conversations/{uuid.uuid4()}/messages",
                  "/api/webhook/not-a-channel/x"]
        for path in paths:
            answer, took = await half_sent(ingress.http_port, path)
            # 408 when the route waits for the body; a route refused before its body is read
            # (an unknown channel: 422) answers at once and uvicorn drops the rest (keep-alive 5 s).
            expected = b"HTTP/1.1 422" if "not-a-channel" in path else b"HTTP/1.1 408"
            held = not answer.startswith(expected) or took > BODY_TIMEOUT + 6
            attack("half-sent request body holds the connection", held)
            assert not held, (path, answer[:200], took)
            assert b"application/problem+json" in answer

    async def test_many_half_sent_bodies_do_not_stall_the_ingress(self, ingress, attack):
        slow = [asyncio.create_task(half_sent(ingress.http_port, "/api/webhook", b"{", 10**6))
                for _ in range(100)]
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            healthy = (await http.get("/healthz", timeout=2)).status_code == 200
        answers = await asyncio.gather(*slow)
        stalled = not healthy or not all(a.startswith(b"HTTP/1.1 408") for a, _ in answers)
        attack("many half-sent bodies stall the ingress", stalled)
        assert not stalled

    async def test_a_slow_but_complete_body_is_served(self, ingress, make_tenant):
        """The clock covers the whole body, not each chunk: a body sent in pieces within the
        limit is an ordinary request."""
        body = b'{"action": "update_lead_score", "lead_id": "%s", "score": 5}' % str(uuid.uuid4()).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", ingress.http_port)
        writer.write(b"POST /api/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer exposure-cron\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 20):
            writer.write(body[i:i + 20])
            await writer.drain()
            await asyncio.sleep(BODY_TIMEOUT / 10)
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]  # an unknown lead: served


class TestSecurityDefinerFunctions:
    async def test_every_definer_function_puts_pg_temp_last(self, settings, attack):
        conn = await asyncpg.connect(settings.migration_database_url)
        try:
            rows = await conn.fetch(
                """SELECT p.oid::regprocedure::text AS name, p.proconfig FROM pg_proc p
                   WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace""")
        finally:
            await conn.close()
        assert rows
        for row in rows:
            paths = [c.removeprefix("search_path=") for c in row["proconfig"] or ()
                     if c.startswith("search_path=")]
            safe = bool(paths) and re.split(r"\s*,\s*", paths[0])[-1] == "pg_temp"
            attack("SECURITY DEFINER function without pg_temp last", not safe)
            assert safe, (row["name"], row["proconfig"])

    async def test_a_temporary_table_cannot_shadow_the_lookups(self, settings, make_tenant, attack):
        victim = await make_tenant()
        forged = "f" * 64
        conn = await asyncpg.connect(settings.database_url)  # the application role
        try:
            await conn.execute(
                """CREATE TEMP TABLE api_keys (tenant_id uuid, key_hash text, revoked_at timestamptz,
                                               expires_at timestamptz);
                   CREATE TEMP TABLE leads (id uuid, tenant_id uuid);
                   CREATE TEMP TABLE conversations (id uuid, tenant_id uuid)""")
            some_id = uuid.uuid4()
            await conn.execute("INSERT INTO pg_temp.api_keys VALUES ($1, $2, NULL, NULL)",
                               victim.id, forged)
            await conn.execute("INSERT INTO pg_temp.leads VALUES ($1, $2)", some_id, victim.id)
            await conn.execute("INSERT INTO pg_temp.conversations VALUES ($1, $2)", some_id, victim.id)
            found = [await conn.fetchval("SELECT api_key_tenant($1)", forged),
                     await conn.fetchval("SELECT lead_tenant($1)", some_id),
                     await conn.fetchval("SELECT conversation_tenant($1)", some_id)]
        finally:
            await conn.close()
        for result in found:
            attack("temporary table shadows a SECURITY DEFINER lookup", result is not None)
        assert found == [None, None, None]


class TestListeningAddress:
    def test_make_run_binds_loopback_and_containers_all_interfaces(self, attack):
        run = (ROOT / "scripts" / "run.sh").read_text()
        exported = re.search(r'^export HTTP_HOST="\$\{HTTP_HOST:-([^}]*)\}"', run, re.M)
        launch = run.index("launch ingress")
        loopback = bool(exported) and exported.group(1) == "127.0.0.1" and exported.start() < launch
        attack("make run listens beyond loopback", not loopback)
        assert loopback
        # The image runs with the settings' default and publishes the port itself.
        assert Settings.model_fields["http_host"].default == "0.0.0.0"
        assert "HTTP_HOST" not in (ROOT / "Dockerfile").read_text()
