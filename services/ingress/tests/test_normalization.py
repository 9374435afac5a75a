"""Every payload kind of every channel, posted signed to the real ingress, read back from the
broker and checked field by field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tistis_common.events import InboundMessage, Location, MediaRef, MessageStatus, OptOutChanged

T = 1764150000  # WhatsApp samples: unix seconds
MS = 1764150000000  # Messenger, Instagram, TikTok samples: unix milliseconds
W = "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYFjNFQjBDMEE"
MARIA = "5215512345678"
PSID, IGSID = "24982345678901234", "1254459154682919"
IGM = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxN"
TTU = "-000ZgW3hVqT9lsYk1cPnbxZ3v5tN7uQ2rF"
CONV = "u5JhpselBAhoPOlnH0tZ9y07kg=="
IGNORED = ("event_id", "occurred_at", "correlation_id", "schema_version", "tenant_id")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def fields(event) -> dict:
    return event.model_dump(exclude=set(IGNORED))


def expect(model, tenant, **values) -> dict:
    return fields(model(tenant_id=tenant.id, **values))


async def published(poster, tap, tenant, channel, name, count):
    answer = await poster.post(channel, tenant, name)
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"] == count
    events = await tap.wait_for(tenant.id, count)
    assert len(await tap.settled(tenant.id)) == count
    return [fields(e) for e in events]


async def acknowledged_without_events(poster, tap, tenant, channel, name, outcome):
    answer = await poster.post(channel, tenant, name)
    assert (answer.status_code, answer.json()["status"], answer.json()["events"]) == (200, outcome, 0)
    assert await tap.settled(tenant.id) == []


# ---------------------------------------------------------------------------- WhatsApp

def wa_inbound(tenant, message_id, seconds=T, user=MARIA, **values):
    return expect(InboundMessage, tenant, channel="whatsapp",
                  platform_account_id=tenant.whatsapp_phone_number_id, platform_user_id=user,
                  platform_message_id=message_id, sent_at=at(seconds),
                  phone="+" + user if user.isdigit() else None, **values)


class TestWhatsApp:
    @pytest.mark.parametrize(("name", "values"), [
        ("whatsapp_text", dict(message_id=W + "001", kind="text",
                               text="Hola, quiero una cita para limpieza")),
        ("whatsapp_button_reply", dict(message_id=W + "002", kind="interactive", text="Sí, confirmo",
                                       choice_id="confirm_yes", choice_title="Sí, confirmo",
                                       reply_to=W + "OUT1")),
        ("whatsapp_list_reply", dict(message_id=W + "003", kind="interactive", text="Limpieza dental",
                                     choice_id="svc_limpieza", choice_title="Limpieza dental",
                                     reply_to=W + "OUT2")),
        ("whatsapp_template_button", dict(message_id=W + "004", kind="button", text="Reagendar",
                                          choice_id="REAGENDAR", choice_title="Reagendar",
                                          reply_to=W + "OUT3")),
        ("whatsapp_image", dict(message_id=W + "005", kind="image", text="Así tengo la muela",
                                media=MediaRef(id="1479537139650973", mime_type="image/jpeg",
                                               caption="Así tengo la muela"))),
        ("whatsapp_audio", dict(message_id=W + "006", kind="audio",
                                media=MediaRef(id="1003383421387256",
                                               mime_type="audio/ogg; codecs=opus"))),
        ("whatsapp_video", dict(message_id=W + "007", kind="video", text="Video de la encía",
                                media=MediaRef(id="1166846181421424", mime_type="video/mp4",
                                               caption="Video de la encía"))),
        ("whatsapp_document", dict(message_id=W + "008", kind="document", text="Mis estudios",
                                   media=MediaRef(id="1254651685623563", mime_type="application/pdf",
                                                  caption="Mis estudios", filename="radiografia.pdf"))),
        ("whatsapp_sticker", dict(message_id=W + "009", kind="sticker",
                                  media=MediaRef(id="1030908455358390", mime_type="image/webp"))),
        ("whatsapp_location", dict(message_id=W + "010", kind="location",
                                   location=Location(latitude=19.4326, longitude=-99.1332,
                                                     name="Mi casa",
                                                     address="Av. Juárez 1, Centro, CDMX"))),
    ])
    async def test_message_kind_is_published_as_inbound_message(
        self, poster, tap, make_tenant, name, values
    ):
        tenant = await make_tenant()
        message_id = values.pop("message_id")
        names = {"display_name": "María García"}
        assert await published(poster, tap, tenant, "whatsapp", name, 1) == [
            wa_inbound(tenant, message_id, **names, **values)]

    async def test_business_scoped_user_id_stands_in_for_a_missing_wa_id(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "whatsapp", "whatsapp_user_id_only", 1) == [
            wa_inbound(tenant, W + "011", user="MX.1502576394655843", display_name="Ana",
                       kind="text", text="¿Tienen horario el sábado?")]

    async def test_many_entries_changes_and_messages_in_one_post_are_all_published(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        events = await published(poster, tap, tenant, "whatsapp", "whatsapp_batch", 5)
        assert sorted(events, key=lambda e: str(e["platform_message_id"])) == sorted([
            wa_inbound(tenant, W + "101", display_name="María García", text="Primero"),
            wa_inbound(tenant, W + "102", T + 1, user="5215587654321", display_name="Pedro Ruiz",
                       text="Hola, soy Pedro"),
            wa_inbound(tenant, W + "103", T + 2, display_name="María García", text="Segundo"),
            wa_inbound(tenant, W + "104", T + 3, display_name="María García", kind="image",
                       media=MediaRef(id="1479537139650999", mime_type="image/jpeg")),
            expect(MessageStatus, tenant, channel="whatsapp",
                   platform_account_id=tenant.whatsapp_phone_number_id,
                   platform_message_id=W + "OUT9", platform_user_id=MARIA, status="delivered",
                   status_at=at(T + 4)),
        ], key=lambda e: str(e["platform_message_id"]))

    async def test_statuses_become_message_status_events_in_the_order_sent(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        events = await published(poster, tap, tenant, "whatsapp", "whatsapp_statuses", 4)

        def status(message_id, value, seconds, **extra):
            return expect(MessageStatus, tenant, channel="whatsapp",
                          platform_account_id=tenant.whatsapp_phone_number_id,
                          platform_message_id=message_id, platform_user_id=MARIA, status=value,
                          status_at=at(seconds), **extra)

        conversation = {"platform_conversation_id": "4f1a0e1bd9c6e1a5c1f8d2e3a4b5c6d7"}
        # Out of order on purpose (read before delivered before sent): each carries its own
        # time and value, so the dispatcher keeps the highest vocabulary.STATUS_RANK and never goes back.
        assert sorted(events, key=lambda e: e["status_at"]) == [
            status(W + "OUT1", "sent", T + 10, **conversation),
            status(W + "OUT1", "delivered", T + 20, **conversation),
            status(W + "OUT1", "read", T + 30),
            status(W + "OUT2", "failed", T + 40, error_code=131047,
                   error_title="Re-engagement message"),
        ]

    async def test_marketing_stop_and_resume_are_published_as_opt_out_changes(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        events = await published(poster, tap, tenant, "whatsapp", "whatsapp_user_preferences", 2)

        def change(opted_out, seconds, detail):
            return expect(OptOutChanged, tenant, channel="whatsapp",
                          platform_account_id=tenant.whatsapp_phone_number_id,
                          platform_user_id="16505551234", opted_out=opted_out,
                          changed_at=at(seconds), detail=detail)

        assert events == [
            change(True, T + 50, "User requested to stop marketing messages"),
            change(False, T + 60, "User requested to resume marketing messages"),
        ]

    async def test_staff_message_from_the_business_app_is_an_agent_message(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "whatsapp", "whatsapp_smb_message_echoes", 1) == [
            wa_inbound(tenant, W + "012", T + 70, text="Hola María, te atiende la Dra. López",
                       sender_type="agent")]

    async def test_unhandled_fields_are_acknowledged_and_counted(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        await acknowledged_without_events(poster, tap, tenant, "whatsapp",
                                          "whatsapp_account_update", "ignored")
        metrics = (await poster.http.get("/metrics")).text
        assert 'tistis_webhook_events_total{channel="whatsapp",kind="ignored"}' in metrics


# ------------------------------------------------------------------ Messenger, Instagram

def meta_inbound(tenant, channel, message_id, ms, **values):
    account = tenant.page_id if channel == "facebook" else tenant.instagram_account_id
    user = values.pop("user", PSID if channel == "facebook" else IGSID)
    return expect(InboundMessage, tenant, channel=channel, platform_account_id=account,
                  platform_user_id=user, platform_message_id=message_id,
                  sent_at=at(ms / 1000), **values)


def meta_prefix(channel):
    return "m_" if channel == "facebook" else IGM


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
class TestMessengerAndInstagram:
    async def test_text(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_text", 1) == [
            meta_inbound(tenant, channel, p + "text001", MS, kind="text",
                         text="Hola, ¿cuánto cuesta una limpieza?")]

    async def test_quick_reply_carries_its_payload(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_quick_reply", 1) == [
            meta_inbound(tenant, channel, p + "qr001", MS + 1, kind="quick_reply", text="Mañana",
                         choice_id="DAY_TOMORROW", choice_title="Mañana")]

    async def test_postback_carries_title_and_payload(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_postback", 1) == [
            meta_inbound(tenant, channel, p + "pb001", MS + 2, kind="postback", text="Agendar cita",
                         choice_id="BOOK_APPOINTMENT", choice_title="Agendar cita")]

    async def test_each_attachment_is_one_event(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        if channel == "facebook":
            second = dict(kind="document", media=MediaRef(
                url="https://cdn.fbsbx.com/v/t59.2708-21/estudios.pdf", filename="estudios.pdf"))
            first_url = "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg"
        else:
            second = dict(kind="share", text="Blanqueamiento", media=MediaRef(
                id="18012345678901234",
                url="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18012345678901234"))
            first_url = ("https://lookaside.fbsbx.com/ig_messaging_cdn/"
                         "?asset_id=17912345678901234&signature=abc")
        assert await published(poster, tap, tenant, channel, f"{channel}_attachments", 2) == [
            meta_inbound(tenant, channel, p + "att001", MS + 3, kind="image",
                         media=MediaRef(url=first_url)),
            meta_inbound(tenant, channel, p + "att001#1", MS + 3, **second),
        ]

    async def test_reply_names_the_message_it_answers(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_reply_to", 1) == [
            meta_inbound(tenant, channel, p + "rep001", MS + 4, text="Sí, a esa hora",
                         reply_to=p + "OUT1")]

    async def test_standby_messages_are_published_too(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_standby", 1) == [
            meta_inbound(tenant, channel, p + "sb001", MS + 7, text="¿Siguen ahí?", standby=True)]

    async def test_echo_of_our_own_send_is_acknowledged_and_never_published(
        self, poster, tap, make_tenant, channel
    ):
        tenant = await make_tenant()
        await acknowledged_without_events(poster, tap, tenant, channel, f"{channel}_echo_ours", "echo")
        metrics = (await poster.http.get("/metrics")).text
        assert f'tistis_webhook_events_total{{channel="{channel}",kind="echo"}}' in metrics

    async def test_echo_from_another_app_is_a_staff_message(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        assert await published(poster, tap, tenant, channel, f"{channel}_echo_staff", 1) == [
            meta_inbound(tenant, channel, p + "echo002", MS + 6, text="Te atiende la Dra. López",
                         sender_type="agent")]

    async def test_reaction_names_the_message_it_is_about(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        [event] = await published(poster, tap, tenant, channel, f"{channel}_reaction", 1)
        assert (event["kind"], event["text"], event["target_id"]) == ("reaction", "❤️", p + "OUT1")

    async def test_many_entries_and_messages_in_one_post(self, poster, tap, make_tenant, channel):
        tenant = await make_tenant()
        p = meta_prefix(channel)
        other = "24982345678900000" if channel == "facebook" else "1254459154680000"
        assert await published(poster, tap, tenant, channel, f"{channel}_batch", 3) == [
            meta_inbound(tenant, channel, p + "b001", MS + 100, text="Uno"),
            meta_inbound(tenant, channel, p + "b002", MS + 101, text="Otro paciente", user=other),
            meta_inbound(tenant, channel, p + "b003", MS + 102, text="Dos"),
        ]


class TestMetaStatuses:
    async def test_messenger_delivery_names_each_message(self, poster, tap, make_tenant):
        tenant = await make_tenant()

        def delivered(mid):
            return expect(MessageStatus, tenant, channel="facebook", platform_account_id=tenant.page_id,
                          platform_message_id=mid, platform_user_id=PSID, status="delivered",
                          status_at=at((MS + 9) / 1000))

        assert await published(poster, tap, tenant, "facebook", "facebook_delivery", 2) == [
            delivered("m_OUT1"), delivered("m_OUT2")]

    async def test_messenger_read_is_a_watermark_over_the_conversation(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "facebook", "facebook_read", 1) == [
            expect(MessageStatus, tenant, channel="facebook", platform_account_id=tenant.page_id,
                   platform_message_id=PSID, platform_user_id=PSID, status="read",
                   status_at=at((MS + 10) / 1000), scope="conversation")]

    async def test_instagram_read_names_the_message(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "instagram", "instagram_read", 1) == [
            expect(MessageStatus, tenant, channel="instagram",
                   platform_account_id=tenant.instagram_account_id,
                   platform_message_id=IGM + "OUT1", platform_user_id=IGSID, status="read",
                   status_at=at((MS + 10) / 1000))]

    async def test_instagram_dashboard_test_event_is_acknowledged_not_stored(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        await acknowledged_without_events(poster, tap, tenant, "instagram",
                                          "instagram_dashboard_test", "ignored")

    async def test_instagram_changes_message_is_read_like_messaging(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "instagram", "instagram_changes_message", 1) == [
            meta_inbound(tenant, "instagram", IGM + "chg001", MS + 11, text="Por changes")]


# ------------------------------------------------------------------------------ TikTok

def tt_inbound(tenant, message_id, ms, **values):
    return expect(InboundMessage, tenant, channel="tiktok", platform_account_id=tenant.tiktok_business_id,
                  platform_user_id=TTU, platform_message_id=message_id,
                  platform_conversation_id=CONV, sent_at=at(ms / 1000), **values)


class TestTikTok:
    @pytest.mark.parametrize(("name", "expected"), [
        ("tiktok_text", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2A==", ms=MS, kind="text",
                             text="Hola, vi su video del blanqueamiento", display_name="maria_garcia")),
        ("tiktok_image", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2B==", ms=MS + 1, kind="image",
                              media=MediaRef(id="v0f044gc0000cs1image001"),
                              display_name="maria_garcia")),
        ("tiktok_share_post", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2C==", ms=MS + 2, kind="share",
                                   text="https://www.tiktok.com/player/v1/7312345678901234567",
                                   media=MediaRef(id="7312345678901234567",
                                                  url="https://www.tiktok.com/player/v1/7312345678901234567"),
                                   display_name="maria_garcia")),
        ("tiktok_reply_to", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2D==", ms=MS + 3, kind="text",
                                 text="Ese horario me sirve", reply_to="u5OUT1",
                                 display_name="maria_garcia")),
        ("tiktok_direct_message_receive", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2E==", ms=MS + 4,
                                               text="Por la suscripción de la guía",
                                               display_name="maria_garcia")),
        ("tiktok_send_msg", dict(message_id="u5Buqc6lAghuOelnHUZV88DK2F==", ms=MS + 5,
                                 text="Hola María, te escribe la recepción", sender_type="agent")),
    ])
    async def test_message_event_is_published(self, poster, tap, make_tenant, name, expected):
        tenant = await make_tenant()
        message_id, ms = expected.pop("message_id"), expected.pop("ms")
        assert await published(poster, tap, tenant, "tiktok", name, 1) == [
            tt_inbound(tenant, message_id, ms, **expected)]

    async def test_mark_read_is_a_read_watermark_on_the_conversation(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        assert await published(poster, tap, tenant, "tiktok", "tiktok_mark_read", 1) == [
            expect(MessageStatus, tenant, channel="tiktok",
                   platform_account_id=tenant.tiktok_business_id, platform_message_id=CONV,
                   platform_user_id=TTU, platform_conversation_id=CONV, status="read",
                   status_at=at((MS + 6) / 1000), scope="conversation")]

    async def test_unhandled_event_is_acknowledged_and_counted(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        await acknowledged_without_events(poster, tap, tenant, "tiktok", "tiktok_other_event",
                                          "ignored")

    async def test_sticker_is_stored(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        [event] = await published(poster, tap, tenant, "tiktok", "tiktok_sticker", 1)
        assert event["kind"] == "sticker"
