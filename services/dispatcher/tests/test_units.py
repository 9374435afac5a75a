"""Pure parts: sentence splitting, the window rules, the stop words, error classification."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tistis_common.events import OutboundMessage, TemplateRef
from tistis_dispatcher import platform, platform_rules
from tistis_dispatcher.text import TooLong, split_text

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


def outbound(channel: str = "whatsapp", **fields) -> OutboundMessage:
    return OutboundMessage(tenant_id=uuid.uuid4(), channel=channel, message_id=uuid.uuid4(),
                           conversation_id=uuid.uuid4(), lead_id=uuid.uuid4(), recipient_id="1",
                           text="hola", **fields)


class TestSplitText:
    def test_a_short_text_is_one_part(self):
        assert split_text("Hola.", 10, 3) == ["Hola."]

    def test_parts_end_on_sentences_and_keep_every_word(self):
        text = "Primera frase. Segunda frase! ¿Tercera? Cuarta."
        parts = split_text(text, 30, 5)
        assert all(len(p) <= 30 for p in parts)
        assert " ".join(parts) == text
        assert parts[0] == "Primera frase. Segunda frase!"

    def test_a_sentence_longer_than_the_limit_is_cut_between_words(self):
        parts = split_text("uno dos tres cuatro cinco seis", 10, 5)
        assert all(len(p) <= 10 for p in parts) and " ".join(parts) == "uno dos tres cuatro cinco seis"

    def test_too_many_parts_is_refused(self):
        with pytest.raises(TooLong):
            split_text("Frase. " * 100, 10, 3)


class TestWindows:
    def test_whatsapp_inside_24h_sends_as_is(self):
        allowed = platform_rules.window(outbound(), NOW - timedelta(hours=23), NOW, 24)
        assert isinstance(allowed, platform_rules.Allowed) and allowed.event.kind == "text"

    def test_whatsapp_outside_uses_the_fallback_template(self):
        event = outbound(fallback_template=TemplateRef(name="seguimiento"))
        allowed = platform_rules.window(event, NOW - timedelta(hours=25), NOW, 24)
        assert isinstance(allowed, platform_rules.Allowed) and allowed.event.kind == "template"

    def test_whatsapp_never_written_is_outside(self):
        assert isinstance(platform_rules.window(outbound(), None, NOW, 24), platform_rules.Blocked)

    def test_an_ai_message_never_gets_the_human_agent_tag(self):
        event = outbound("instagram", sender_type="ai")
        assert isinstance(platform_rules.window(event, NOW - timedelta(days=2), NOW, 24),
                          platform_rules.Blocked)

    def test_tiktok_window_is_configurable(self):
        event = outbound("tiktok")
        before = NOW - timedelta(hours=30)
        assert isinstance(platform_rules.window(event, before, NOW, 24), platform_rules.Blocked)
        assert isinstance(platform_rules.window(event, before, NOW, 48), platform_rules.Allowed)


class TestOptOutWords:
    @pytest.mark.parametrize("text", ["STOP", "stop", "Baja.", "  BAJA  ", "bája"])
    def test_stop_words(self, text):
        assert platform_rules.is_opt_out(text, ["STOP", "BAJA"])

    @pytest.mark.parametrize("text", ["no me des de baja", "stop it please", "", None])
    def test_not_stop_words(self, text):
        assert not platform_rules.is_opt_out(text, ["STOP", "BAJA"])


def graph(status: int, code: int | None = None, headers: dict | None = None,
          subcode: int | None = None) -> httpx.Response:
    err: dict = {"message": "x", "type": "OAuthException"}
    if code is not None:
        err["code"] = code
    if subcode is not None:
        err["error_subcode"] = subcode
    return httpx.Response(status, json={"error": err}, headers=headers or {})


class TestClassification:
    @pytest.mark.parametrize(("status", "code", "kind"), [
        (401, 190, platform.TokenInvalid),
        (429, 130429, platform.RateLimited),
        (400, 131056, platform.RateLimited),
        (429, 613, platform.RateLimited),
        (400, 131047, platform.WindowClosed),
        (400, 131050, platform.OptedOut),
        (400, 131026, platform.Rejected),
        (400, 132000, platform.Rejected),
        (404, 132001, platform.Rejected),
        (500, 131000, platform.Transient),
        (503, 2, platform.Transient),
        (502, None, platform.Transient),
    ])
    def test_graph_codes(self, status, code, kind):
        assert type(platform.classify_graph(graph(status, code))) is kind

    def test_messenger_window_subcode(self):
        error = platform.classify_graph(graph(400, 10, subcode=2018278))
        assert isinstance(error, platform.WindowClosed)

    def test_retry_after_and_recipient_only(self):
        error = platform.classify_graph(graph(400, 131056, {"Retry-After": "3"}))
        assert isinstance(error, platform.RateLimited)
        assert error.retry_after == 3 and error.recipient_only

    @pytest.mark.parametrize(("code", "kind"), [
        (40105, platform.TokenInvalid), (40100, platform.RateLimited),
        (50000, platform.Transient), (40002, platform.Rejected),
    ])
    def test_tiktok_codes_come_with_http_200(self, code, kind):
        response = httpx.Response(200, json={"code": code, "message": "x", "data": {}})
        assert type(platform.classify_tiktok(response)) is kind

    def test_tiktok_code_0_is_success(self):
        assert platform.classify_tiktok(httpx.Response(200, json={"code": 0, "data": {}})) is None


class TestTenantLimiter:
    async def test_a_busy_tenant_holds_only_its_own_slots(self):
        import asyncio

        from tistis_dispatcher.limiter import TenantLimiter

        limiter = TenantLimiter(per_tenant=2)
        release, two_in = asyncio.Event(), asyncio.Event()
        inside = []

        async def busy() -> None:
            async with limiter.slot("big"):
                inside.append(1)
                if len(inside) == 2:
                    two_in.set()
                await release.wait()

        tasks = [asyncio.create_task(busy()) for _ in range(6)]
        await two_in.wait()
        async with asyncio.timeout(5), limiter.slot("small"):
            assert len(inside) == 2  # the big tenant's other four wait; the small one did not
        release.set()
        await asyncio.gather(*tasks)
        assert len(inside) == 6
