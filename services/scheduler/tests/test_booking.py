"""Appointment requests through the real RabbitMQ into PostgreSQL, with the scheduler's clock
standing on Friday 8 January 2027, 12:00 in Mexico City. The demo branch opens Monday to Friday
09:00-18:00 (America/Mexico_City), one chair; the service takes 45 minutes."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from tistis_common.events import AppointmentRequested, Channel, InboundMessage


def request(p, **fields) -> AppointmentRequested:
    return AppointmentRequested(tenant_id=p.tenant_id, lead_id=p.lead_id,
                                conversation_id=p.conversation_id, **fields)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def booked(rows, tenant_id):
    return await rows.fetch(
        tenant_id, "SELECT * FROM appointments WHERE status = 'booked' ORDER BY scheduled_at")


class TestBookingInsideHours:
    async def test_preferred_day_books_its_first_slot_and_confirms_with_the_template(
        self, scheduler, make_tenant, rows, bus
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, service_name="limpieza",
                                                    preferred_dates=["2027-01-11"]))
            [sent] = await bus.events(tenant.id, at_least=1)
        [appt] = await booked(rows, tenant.id)
        assert (appt["scheduled_at"], appt["ends_at"]) == (utc(2027, 1, 11, 15), utc(2027, 1, 11, 15, 45))
        assert appt["service_id"] == await rows.service_id(tenant.id)
        assert sent.kind == "template" and sent.purpose == "confirmation"
        assert sent.template.name == "cita_confirmada"
        assert sent.template.body_params == ["María García", "lunes 11 de enero", "09:00", "Centro"]
        [msg] = await rows.fetch(tenant.id, "SELECT * FROM messages WHERE id = $1", sent.message_id)
        assert (msg["direction"], msg["sender_type"]) == ("outbound", "system")
        assert msg["purpose"] == "confirmation"
        assert "lunes 11 de enero a las 09:00" in msg["content"]

    async def test_wished_hour_is_booked_when_free(self, scheduler, make_tenant, rows, bus):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-12T16:30"]))
            await bus.events(tenant.id, at_least=1)
        [appt] = await booked(rows, tenant.id)
        assert appt["scheduled_at"] == utc(2027, 1, 12, 22, 30)  # 16:30 in Mexico City

    async def test_same_request_delivered_twice_books_once(self, scheduler, make_tenant, rows, bus):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        event = request(p, preferred_dates=["2027-01-11"])
        async with scheduler() as runtime:
            await runtime.publisher.publish(event)
            await runtime.publisher.publish(event)
            sent = await bus.events(tenant.id, at_least=2)
        assert len(await booked(rows, tenant.id)) == 1
        assert len({e.message_id for e in sent}) == 1  # the same message again: the dispatcher drops it
        assert len({e.event_id for e in sent}) == 1

    async def test_service_and_branch_names_match_without_accents_or_case(
        self, scheduler, make_tenant, rows, bus
    ):
        tenant = await make_tenant()
        await rows.branch(tenant.id, name="Nogales Poniente")
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, service_name="LIMPIÉZA DENTAL",
                                                    branch_name="nogales", preferred_dates=["2027-01-11"]))
            [sent] = await bus.events(tenant.id, at_least=1)
        [appt] = await booked(rows, tenant.id)
        assert appt["service_id"] == await rows.service_id(tenant.id)
        assert sent.template.body_params[-1] == "Nogales Poniente"

    async def test_legacy_exact_time_inside_hours_is_booked_exactly(self, scheduler, make_tenant, rows, bus):
        tenant = await make_tenant()
        p = await rows.patient(tenant, channel="facebook")
        async with scheduler() as runtime:
            await runtime.publisher.publish(
                request(p, scheduled_at=utc(2027, 1, 13, 16, 10), source="legacy"))
            [sent] = await bus.events(tenant.id, at_least=1)
        [appt] = await booked(rows, tenant.id)
        assert appt["scheduled_at"] == utc(2027, 1, 13, 16, 10)
        assert sent.kind == "text" and sent.channel is Channel.FACEBOOK
        assert sent.text == ("¡Listo, María García! Tu cita de Limpieza dental quedó agendada para el "
                             "miércoles 13 de enero a las 10:10 en Centro (Av. Juárez 1).")


class TestBookingOutsideHours:
    async def test_closed_day_offers_the_next_free_slots_as_a_whatsapp_list(
        self, scheduler, make_tenant, rows, bus
    ):
        tenant = await make_tenant()
        branch_id = await rows.branch(tenant.id)
        service_id = await rows.service_id(tenant.id)
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-09T20:00"]))  # Saturday
            [offer] = await bus.events(tenant.id, at_least=1)
        assert await booked(rows, tenant.id) == []
        assert offer.kind == "list" and offer.list_button == "Ver horarios"
        rows_ = [r for s in offer.sections for r in s.rows]
        assert 1 <= len(rows_) <= 10
        assert rows_[0].id == f"slot:{branch_id}:{service_id}:2027-01-08T19:00Z"  # today 13:00, 1 h notice
        assert rows_[0].title == "vie 8 ene, 13:00"
        assert rows_[0].description == "viernes 8 de enero, 13:00 · Centro"
        assert all(len(r.title) <= 24 and len(r.description) <= 72 and len(r.id) <= 200 for r in rows_)
        assert "No tenemos disponible el horario que pediste" in offer.text

    async def test_choosing_an_offered_row_books_that_slot(self, scheduler, make_tenant, rows, bus, clock):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, scheduled_at=utc(2027, 1, 11, 2)))  # 20:00 local
            [offer] = await bus.events(tenant.id, at_least=1)
            row = offer.sections[0].rows[2]
            choice = InboundMessage(
                tenant_id=tenant.id, channel=Channel.WHATSAPP,
                platform_account_id=tenant.whatsapp_phone_number_id, platform_user_id=p.platform_user_id,
                platform_message_id=f"wamid.{uuid.uuid4().hex}", sent_at=clock(), kind="interactive",
                choice_id=row.id, choice_title=row.title,
            )
            await runtime.publisher.publish(choice)
            sent = await bus.events(tenant.id, at_least=2)
        [appt] = await booked(rows, tenant.id)
        assert appt["scheduled_at"] == datetime.fromisoformat(row.id.split(":", 3)[3].replace("Z", "+00:00"))
        assert sent[1].template.name == "cita_confirmada"
        open_offers = "SELECT count(*) FROM scheduler_offers WHERE consumed_at IS NULL"
        assert await rows.val(tenant.id, open_offers) == 0

    async def test_tiktok_gets_the_offer_as_numbered_text(self, scheduler, make_tenant, rows, bus):
        tenant = await make_tenant()
        p = await rows.patient(tenant, channel="tiktok")
        async with scheduler(scheduler_offer_count=3) as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-10"]))  # Sunday
            [offer] = await bus.events(tenant.id, at_least=1)
        assert offer.kind == "text" and offer.channel is Channel.TIKTOK
        assert offer.text.splitlines()[1:] == [
            "1. viernes 8 de enero, 13:00 (Centro)", "2. viernes 8 de enero, 13:30 (Centro)",
            "3. lunes 11 de enero, 09:00 (Centro)", "Respóndenos con el horario que prefieras."]

    async def test_instagram_gets_quick_replies_whose_payload_books_when_tapped(
        self, scheduler, make_tenant, rows, bus, clock
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant, channel="instagram")
        async with scheduler(scheduler_offer_count=3) as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-10"]))
            [offer] = await bus.events(tenant.id, at_least=1)
            assert offer.kind == "quick_replies" and offer.channel is Channel.INSTAGRAM
            assert [b.title for b in offer.buttons] == [
                "vie 8 ene, 13:00", "vie 8 ene, 13:30", "lun 11 ene, 09:00"]
            assert offer.text.splitlines()[-1] == "Elige el horario que prefieras."
            tapped = offer.buttons[2]
            await runtime.publisher.publish(InboundMessage(
                tenant_id=tenant.id, channel=Channel.INSTAGRAM,
                platform_account_id=tenant.instagram_account_id,
                platform_user_id=p.platform_user_id, platform_message_id=f"mid.{uuid.uuid4().hex}",
                sent_at=clock(), kind="quick_reply", text=tapped.title, choice_id=tapped.id,
                choice_title=tapped.title))
            confirmation = (await bus.events(tenant.id, at_least=2))[1]
        [appt] = await booked(rows, tenant.id)
        assert appt["scheduled_at"] == utc(2027, 1, 11, 15)
        assert confirmation.kind == "text" and "lunes 11 de enero a las 09:00" in confirmation.text


class TestRescheduleAndCancel:
    async def test_reschedule_moves_the_appointment_and_frees_the_old_time(
        self, scheduler, make_tenant, rows, bus
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-11"]))
            await bus.events(tenant.id, at_least=1)
            [first] = await booked(rows, tenant.id)
            await runtime.publisher.publish(request(p, action="reschedule", appointment_id=first["id"],
                                                    preferred_dates=["2027-01-12T10:00"]))
            sent = await bus.events(tenant.id, at_least=2)
            other = await rows.patient(tenant, name="Ana")
            await runtime.publisher.publish(request(other, preferred_dates=["2027-01-11"]))
            await bus.events(tenant.id, at_least=3)
        moved, theirs = await booked(rows, tenant.id)
        assert (theirs["id"], theirs["scheduled_at"]) == (first["id"], utc(2027, 1, 12, 16))
        assert moved["scheduled_at"] == utc(2027, 1, 11, 15)  # the old slot went to someone else
        assert "reprogramada" in (await rows.val(tenant.id, "SELECT content FROM messages WHERE id = $1",
                                                 sent[1].message_id))

    async def test_reschedule_to_a_closed_day_offers_slots_and_the_choice_moves_the_same_appointment(
        self, scheduler, make_tenant, rows, bus, clock
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-11"]))
            await bus.events(tenant.id, at_least=1)
            [first] = await booked(rows, tenant.id)
            await runtime.publisher.publish(request(p, action="reschedule", preferred_dates=["2027-01-10"]))
            offer = (await bus.events(tenant.id, at_least=2))[1]
            row = offer.sections[0].rows[-1]
            await runtime.publisher.publish(InboundMessage(
                tenant_id=tenant.id, channel=Channel.WHATSAPP,
                platform_account_id=tenant.whatsapp_phone_number_id, platform_user_id=p.platform_user_id,
                platform_message_id=f"wamid.{uuid.uuid4().hex}", sent_at=clock(), kind="interactive",
                choice_id=row.id, choice_title=row.title,
            ))
            confirmation = (await bus.events(tenant.id, at_least=3))[2]
        [moved] = await booked(rows, tenant.id)
        assert moved["id"] == first["id"] and moved["scheduled_at"] != first["scheduled_at"]
        assert moved["scheduled_at"].strftime("%Y-%m-%dT%H:%MZ") == row.id.split(":", 3)[3]
        assert confirmation.template.name == "cita_confirmada"
        claims = await rows.fetch(tenant.id, "SELECT DISTINCT appointment_id FROM appointment_claims")
        assert [c["appointment_id"] for c in claims] == [first["id"]]

    async def test_cancel_frees_the_slot_and_tells_the_patient(self, scheduler, make_tenant, rows, bus):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        async with scheduler() as runtime:
            await runtime.publisher.publish(request(p, preferred_dates=["2027-01-11"]))
            await bus.events(tenant.id, at_least=1)
            await runtime.publisher.publish(request(p, action="cancel"))
            sent = await bus.events(tenant.id, at_least=2)
        assert await booked(rows, tenant.id) == []
        assert await rows.val(tenant.id, "SELECT count(*) FROM appointment_claims") == 0
        assert sent[1].text.startswith("Tu cita del lunes 11 de enero a las 09:00 en Centro quedó cancelada")


class TestCapacityUnderRace:
    @pytest.mark.parametrize("capacity", [1, 2])
    async def test_last_slot_raced_by_twenty_requests_is_booked_capacity_times(
        self, scheduler, make_tenant, rows, bus, capacity
    ):
        tenant = await make_tenant()
        # Monday opens for exactly one 45-minute slot.
        await rows.branch(tenant.id, capacity=capacity, opening_hours={"mon": [["09:00", "09:45"]]})
        patients = [await rows.patient(tenant, name=f"P{n}") for n in range(20)]
        async with scheduler() as runtime, scheduler():  # two replicas share the requests
            await asyncio.gather(*(runtime.publisher.publish(request(p, preferred_dates=["2027-01-11"]))
                                   for p in patients))
            sent = await bus.events(tenant.id, at_least=20, timeout=30)
        appts = await booked(rows, tenant.id)
        assert [a["scheduled_at"] for a in appts] == [utc(2027, 1, 11, 15)] * capacity
        assert sorted(e.kind for e in sent) == ["list"] * (20 - capacity) + ["template"] * capacity

    async def test_database_refuses_a_claim_beyond_capacity_or_twice(self, make_tenant, rows, app_pool):
        from tistis_common.db import tenant_tx

        tenant = await make_tenant()
        p = await rows.patient(tenant)
        appt = await rows.appointment(p, at=utc(2027, 1, 11, 15), booked_at=utc(2027, 1, 1))
        branch_id = await rows.branch(tenant.id)
        insert = """INSERT INTO appointment_claims
                      (tenant_id, branch_id, slot_start, chair_no, appointment_id)
                    VALUES ($1, $2, $3, $4, $5)"""
        async with tenant_tx(app_pool, tenant.id) as conn:
            await conn.execute(insert, tenant.id, branch_id, utc(2027, 1, 11, 15), 1, appt)
        with pytest.raises(asyncpg.UniqueViolationError):
            async with tenant_tx(app_pool, tenant.id) as conn:
                await conn.execute(insert, tenant.id, branch_id, utc(2027, 1, 11, 15), 1, appt)
        with pytest.raises(asyncpg.CheckViolationError):
            async with tenant_tx(app_pool, tenant.id) as conn:
                await conn.execute(insert, tenant.id, branch_id, utc(2027, 1, 11, 15), 2, appt)


class TestRescheduleAndCancelUnderRace:
    async def test_racing_reschedules_into_one_free_chair_move_one_and_a_cancel_frees_it(
        self, scheduler, make_tenant, rows, bus
    ):
        """Monday and Tuesday open for one 45-minute slot each, one chair: eight patients booked
        elsewhere all ask, at once and on two replicas, to move to Monday 09:00. One moves; the
        others keep their time and get an offer. Then the mover cancels and the freed chair is
        booked by someone else."""
        tenant = await make_tenant()
        await rows.branch(tenant.id, capacity=1, opening_hours={
            d: [["09:00", "09:45"]] for d in ("mon", "tue", "wed", "thu", "fri")})
        patients = [await rows.patient(tenant, name=f"P{n}") for n in range(8)]
        days = [utc(2027, 1, 12 + n, 15) for n in range(4)] + [utc(2027, 1, 19 + n, 15)
                                                                for n in range(4)]
        for p, at in zip(patients, days, strict=True):
            await rows.appointment(p, at=at, booked_at=utc(2027, 1, 1))
        async with scheduler() as runtime, scheduler():
            await asyncio.gather(*(runtime.publisher.publish(request(
                p, action="reschedule", preferred_dates=["2027-01-11T09:00"])) for p in patients))
            sent = await bus.events(tenant.id, at_least=8, timeout=30)
            appts = await booked(rows, tenant.id)
            assert [a["scheduled_at"] for a in appts].count(utc(2027, 1, 11, 15)) == 1
            assert len(appts) == 8  # nobody lost an appointment
            assert sorted(e.kind for e in sent) == ["list"] * 7 + ["template"]
            mover = next(a for a in appts if a["scheduled_at"] == utc(2027, 1, 11, 15))
            cells = await rows.val(tenant.id, """SELECT count(*) FROM appointment_claims
                                                 WHERE slot_start >= $1 AND slot_start < $2""",
                                   utc(2027, 1, 11, 15), utc(2027, 1, 11, 16))
            assert cells == 3  # 45 minutes: three 15-minute cells, one chair
            mover_patient = next(p for p in patients if p.lead_id == mover["lead_id"])
            await runtime.publisher.publish(request(mover_patient, action="cancel",
                                                    appointment_id=mover["id"]))
            await bus.events(tenant.id, at_least=9, timeout=10)
            newcomer = await rows.patient(tenant, name="Nueva")
            await runtime.publisher.publish(request(newcomer, preferred_dates=["2027-01-11T09:00"]))
            await bus.events(tenant.id, at_least=10, timeout=10)
        monday = [a for a in await booked(rows, tenant.id) if a["scheduled_at"] == utc(2027, 1, 11, 15)]
        assert [a["lead_id"] for a in monday] == [newcomer.lead_id]
