"""The follow-up ladder: 48 h of silence after our last message, three `seguimiento`, then COLD;
any patient reply starts again; some leads are never followed up."""

from datetime import UTC, datetime, timedelta

import pytest
from tistis_scheduler.service import run_pass

T0 = datetime(2027, 1, 4, 16, tzinfo=UTC)


async def followups(rows, tenant_id):
    return await rows.fetch(tenant_id, "SELECT * FROM followups ORDER BY sent_at")


@pytest.fixture
async def ladder(make_tenant, rows, bus, clock, deps_for, scheduler):
    """A tenant with one patient who wrote at T0 and got our answer a minute later."""

    async def make(**lead):
        tenant = await make_tenant()
        p = await rows.patient(tenant, **lead)
        await rows.message(p, direction="inbound", at=T0)
        await rows.message(p, direction="outbound", at=T0 + timedelta(minutes=1))
        return tenant, p

    async with scheduler() as runtime:
        async def step(at: datetime):
            clock.set(at)
            result = await run_pass(deps_for(runtime))
            assert result.errors == []

        yield make, step


class TestFollowUpLadder:
    async def test_three_follow_ups_48_hours_apart_then_cold_then_silence(self, ladder, rows, bus):
        make, step = ladder
        tenant, p = await make()
        await step(T0 + timedelta(hours=48))  # our answer is 47 h 59 min old
        assert await bus.events(tenant.id) == []
        times = [T0 + timedelta(hours=49), T0 + timedelta(hours=98), T0 + timedelta(hours=147)]
        for n, at in enumerate(times, 1):
            await step(at)
            await step(at + timedelta(hours=4))  # the next pass: our follow-up is fresh, nothing
            sent = await bus.events(tenant.id, at_least=n)
            assert len(sent) == n
        assert [(e.kind, e.purpose, e.template.name, e.template.body_params) for e in sent] == [
            ("template", "followup", "seguimiento", ["María García"])] * 3
        assert [f["attempt"] for f in await followups(rows, tenant.id)] == [1, 2, 3]
        await step(T0 + timedelta(hours=196))
        cold = await bus.events(tenant.id, kind="lead.score_set", at_least=1)
        assert [(e.lead_id, e.source) for e in cold] == [(p.lead_id, "followup")]
        assert cold[0].score <= 39 and "3 follow-ups unanswered" in cold[0].reason
        for later in (250, 300, 400):  # COLD and left alone
            await step(T0 + timedelta(hours=later))
        assert len(await bus.events(tenant.id)) == 4

    async def test_a_patient_reply_resets_the_count(self, ladder, rows, bus):
        make, step = ladder
        tenant, p = await make()
        await step(T0 + timedelta(hours=49))
        await step(T0 + timedelta(hours=98))
        reply = T0 + timedelta(hours=100)
        await rows.message(p, direction="inbound", at=reply, text="perdón, sigo interesada")
        await rows.message(p, direction="outbound", at=reply + timedelta(minutes=1))
        await step(reply + timedelta(hours=47))
        assert len(await bus.events(tenant.id)) == 2
        await step(reply + timedelta(hours=49))
        assert len(await bus.events(tenant.id, at_least=3)) == 3
        ladder_rows = await followups(rows, tenant.id)
        assert [f["attempt"] for f in ladder_rows] == [1, 2, 1]
        assert [f["answered_at"] for f in ladder_rows] == [reply, reply, None]

    async def test_two_replicas_passing_together_send_one_follow_up(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        import asyncio

        tenant = await make_tenant()
        p = await rows.patient(tenant)
        await rows.message(p, direction="inbound", at=T0)
        await rows.message(p, direction="outbound", at=T0 + timedelta(minutes=1))
        clock.set(T0 + timedelta(hours=49))
        async with scheduler() as one, scheduler() as two:
            await asyncio.gather(*(run_pass(deps_for(r)) for _ in range(5) for r in (one, two)))
        assert len(await bus.events(tenant.id, at_least=1)) == 1
        assert len(await followups(rows, tenant.id)) == 1

    @pytest.mark.parametrize("lead", [{"spam": True}, {"not_interested": True},
                                      {"opted_out_at": T0}, {"status": "human"}])
    async def test_spam_uninterested_opted_out_and_staff_handled_leads_are_left_alone(
        self, ladder, bus, lead
    ):
        make, step = ladder
        tenant, _ = await make(**lead)
        await step(T0 + timedelta(hours=49))
        assert await bus.events(tenant.id) == []

    async def test_a_lead_with_an_appointment_ahead_is_not_chased(self, ladder, rows, bus):
        make, step = ladder
        tenant, p = await make()
        await rows.appointment(p, at=T0 + timedelta(days=7), booked_at=T0)
        await step(T0 + timedelta(hours=49))
        assert await bus.events(tenant.id) == []

    async def test_instagram_follow_up_waits_for_the_window(self, ladder, bus):
        make, step = ladder
        tenant, _ = await make(channel="instagram")
        await step(T0 + timedelta(hours=49))
        assert await bus.events(tenant.id) == []  # a plain message after 24 h is not allowed there
