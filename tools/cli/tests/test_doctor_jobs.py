"""`tistis doctor` and `tistis jobs` against the session's broker and database."""

from __future__ import annotations

import json
import uuid

from tistis_common.broker import Publisher, connect
from tistis_common.db import connect as db_connect
from tistis_common.db import tenant_tx
from tistis_common.events import Channel, OutboundMessage
from tistis_common.testing.plugin import eventually
from tistis_common.topology import DISPATCHER_OUTBOUND

from .conftest import json_of


def outbound(channel: Channel) -> OutboundMessage:
    return OutboundMessage(tenant_id=uuid.uuid4(), channel=channel, message_id=uuid.uuid4(),
                           conversation_id=uuid.uuid4(), lead_id=uuid.uuid4(), recipient_id="u", text="hola")


async def jobs(tistis, **env: str) -> dict[str, dict]:
    result = await tistis("jobs", "--json", **env)
    assert result.exit_code == 0, result.output
    return {row["job_type"]: row for row in json_of(result.output)}


class TestJobs:
    async def test_every_guide_job_type_is_listed(self, tistis):
        rows = await jobs(tistis)
        assert list(rows) == [
            "ai_response", "send_whatsapp", "send_instagram", "send_facebook", "send_tiktok"]
        assert rows["send_tiktok"]["queue"] == "dispatcher.tiktok"
        table = await tistis("jobs")
        assert table.output.splitlines()[0].split()[:3] == ["job", "type", "queued"]

    async def test_queued_retrying_dead_and_in_flight(self, tistis, settings, private_vhost):
        before = await jobs(tistis, RABBITMQ_URL=private_vhost)
        connection = await connect(private_vhost)
        try:
            publisher = await Publisher.open(connection)
            spec = DISPATCHER_OUTBOUND[Channel.INSTAGRAM]
            for _ in range(2):
                await publisher.publish(outbound(Channel.INSTAGRAM))
            body = outbound(Channel.INSTAGRAM).model_dump_json().encode()
            await publisher.send_to_queue(spec.dlq, body, {}, {})
            # a retry parked for longer than this test: its own delay queue, as the runner has
            longer = [*settings.retry_delays, 60.0]
            channel = await connection.channel()
            await channel.declare_queue(spec.retry_queue(60.0), durable=True,
                                        arguments=spec.retry_arguments(60.0))
            await publisher.send_to_queue(spec.retry_queue(60.0), body, {}, {})
            after = await jobs(tistis, RABBITMQ_URL=private_vhost, RETRY_DELAYS=json.dumps(longer))
            row = after["send_instagram"]
            assert row["queued"] == before["send_instagram"]["queued"] + 2
            assert row["dead"] == before["send_instagram"]["dead"] + 1
            assert row["retrying"] == before["send_instagram"]["retrying"] + 1

            # in flight: taken by a consumer, not acked yet (the management API samples this)
            queue = await channel.get_queue(spec.name)
            held = await queue.get(no_ack=False)

            async def in_flight():
                return (await jobs(tistis, RABBITMQ_URL=private_vhost))["send_instagram"]["in_flight"] == 1

            await eventually(in_flight, timeout=20, interval=1)
            await held.nack(requeue=True)
            await channel.queue_delete(spec.retry_queue(60.0))
        finally:
            await connection.close()


class TestDoctor:
    async def test_reports_database_broker_queues_and_each_token(self, tistis, make_tenant):
        tenant = await make_tenant()
        result = await tistis("doctor", "--json")
        checks = {c["what"]: c for c in json_of(result.output)}
        assert checks["database"]["status"] == "ok"
        assert checks["broker"]["status"] == "ok"
        assert checks["migrations"]["status"] == "ok"  # applied files unchanged
        assert checks["queue ai-responder.inbound"]["status"] in ("ok", "warn")
        assert "ready=" in checks["queue dispatcher.whatsapp"]["detail"]
        mine = {k: v["status"] for k, v in checks.items() if k.startswith(f"token {tenant.slug}/")}
        assert sorted(mine.values()) == ["ok"] * 4

    async def test_a_refused_token_fails_the_doctor(self, tistis, make_tenant):
        tenant = await make_tenant()
        await tistis("connection", "rotate", tenant.slug, "facebook", "--access-token", "revoked-fb")
        try:
            result = await tistis("doctor")
            assert result.exit_code == 1
            [line] = [x for x in result.output.splitlines() if f"{tenant.slug}/facebook" in x]
            assert line.startswith("FAIL")
        finally:
            await tistis("connection", "rotate", tenant.slug, "facebook", "--access-token", "token-ok")

    async def test_a_refused_token_refresh_fails_the_doctor_until_the_channel_is_reconnected(
        self, tistis, make_tenant, app_pool
    ):
        tenant = await make_tenant()
        async with tenant_tx(app_pool, tenant.id) as conn:
            # What the dispatcher's refresher writes when TikTok refuses the refresh token
            # (tistis_dispatcher.tokens, tested in services/dispatcher/tests/test_token_refresh.py).
            await conn.execute(
                """UPDATE channel_connections SET healthy = false,
                     token_expires_at = now() + interval '2 hours', token_refresh_error = $1
                   WHERE channel = 'tiktok'""",
                "token refresh: 40105: refresh_token is incorrect or has been revoked.")
        what = f"token refresh {tenant.slug}/tiktok/{tenant.tiktok_business_id}"
        result = await tistis("doctor")
        assert result.exit_code == 1
        [line] = [x for x in result.output.splitlines() if what in x]
        assert line.startswith("FAIL") and "40105" in line and "tistis connection rotate" in line

        rotated = await tistis("connection", "rotate", tenant.slug, "tiktok",
                               "--refresh-token", "rft-new", "--expires-in", "86400")
        assert rotated.exit_code == 0, rotated.output
        result = await tistis("doctor")
        assert not [x for x in result.output.splitlines() if what in x]
        async with tenant_tx(app_pool, tenant.id) as conn:
            row = await conn.fetchrow(
                "SELECT refresh_token, token_expires_at FROM channel_connections "
                "WHERE channel = 'tiktok'")
        assert row["refresh_token"].startswith("fernet:")  # sealed like the access token
        shown = await tistis("connection", "show", tenant.slug, "--channel", "tiktok", "--json")
        assert "rft-new" not in shown.output

    async def test_a_migration_changed_after_it_was_applied_fails_the_doctor(self, tistis, settings):
        owner = await db_connect(settings.migration_database_url)
        # What editing 0001_core.sql does: its checksum no longer matches the stored one.
        stored = await owner.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1")
        await owner.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        try:
            result = await tistis("doctor")
            assert result.exit_code == 1
            [line] = [x for x in result.output.splitlines() if x.split()[1:2] == ["migrations"]]
            assert line.startswith("FAIL") and "0001_core" in line
        finally:
            await owner.execute("UPDATE schema_migrations SET checksum = $1 WHERE version = 1", stored)
            await owner.close()

    async def test_unreachable_broker_is_a_failure_not_a_crash(self, tistis):
        result = await tistis("doctor", RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/")
        assert result.exit_code == 1
        assert any(line.startswith("FAIL  broker") for line in result.output.splitlines())

    async def test_wrong_database_is_a_failure(self, tistis):
        result = await tistis("doctor", DATABASE_URL="postgresql://nobody:x@127.0.0.1:5432/nope")
        assert result.exit_code == 1
        assert any(line.startswith("FAIL  database") for line in result.output.splitlines())


