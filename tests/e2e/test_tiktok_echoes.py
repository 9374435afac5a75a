"""TikTok reports every message the business account sends, ours included, as `im_send_msg`,
and gives no order between that echo and the send's own answer. Our own API sends (each part
of a split reply, an echo that beats the answer) never hand the conversation to staff; a
message staff send from the TikTok app does.

Shapes: services/ingress/tests/payloads/tiktok_send_msg.json (TikTok Business Messaging
webhooks: `im_send_msg` from the business account to the user, `content` a JSON string).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client import REGISTRY
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_common.topology import AI_INBOUND
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import AsyncSandboxClient, running_sandbox
from tistis_sandbox import webhooks as wh


def consumed() -> float:
    return REGISTRY.get_sample_value("tistis_events_consumed_total", {
        "queue": AI_INBOUND.name, "outcome": "ok"}) or 0.0


# Sentences over TikTok's 6,000 characters: sent in parts, each echoed.
LONG_REPLY = " ".join(["La limpieza dental cuesta entre 600 y 900 pesos y dura 45 minutos."] * 120)


@pytest.mark.parametrize("echo_before_answer", [False, True])
async def test_our_own_sends_echoed_never_hand_over_and_a_staff_message_does(
    settings, make_tenant, app_pool, echo_before_answer
):
    tenant = await make_tenant()
    user = f"tt-user-{uuid.uuid4().hex[:8]}"
    conversation = wh.tiktok_conversation_id(user)
    with running_sandbox() as sandbox_url:
        async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
            s = s.model_copy(update={
                "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
                "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
                "ai_debounce_seconds": 0.2,
            })
            await sandbox.script("anthropic", {"tool_calls": [
                    {"name": "reply_to_patient", "input": {"text": LONG_REPLY}}]})
            async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                    running(start_dispatcher, s):
                url = f"http://127.0.0.1:{ingress.http_port}"
                start = consumed()
                await sandbox.tiktok_echoes(f"{url}/api/webhook/tiktok",
                                            app_secret=s.tiktok_client_secret,
                                            conversations={conversation: user},
                                            echo_before_answer=echo_before_answer)
                payload = wh.tiktok_payload("¿Cuánto cuesta una limpieza?", user_id=user,
                                            business_id=tenant.tiktok_business_id)
                body, headers = wh.sign_tiktok(payload, s.tiktok_client_secret)
                async with httpx.AsyncClient(base_url=url) as http:
                    assert (await http.post("/api/webhook/tiktok", content=body,
                                            headers=headers)).status_code == 200

                    async def echoed():
                        done = [d for d in await sandbox.deliveries()
                                if d["status"] == "im_send_msg" and d["http_status"] == 200]
                        return done if len(done) >= 2 else None

                    await eventually(echoed, timeout=20)

                    async def handled() -> bool:
                        # the patient's message and both echoes, taken by the ai-responder
                        return consumed() >= start + 3

                    await eventually(handled, timeout=20)

                    async def state():
                        async with tenant_tx(app_pool, tenant.id) as conn:
                            return await conn.fetchrow(
                                """SELECT c.status, count(m.*) FILTER (
                                            WHERE m.sender_type = 'agent') AS agent
                                   FROM conversations c JOIN messages m
                                     ON m.conversation_id = c.id
                                   GROUP BY c.status""")

                    row = await eventually(state)
                    assert (row["status"], row["agent"]) == ("active", 0)

                    # Staff write from the TikTok app: that echo is theirs.
                    staff = wh.tiktok_payload("Hola, le escribe la recepción", user_id=user,
                                              business_id=tenant.tiktok_business_id)
                    staff["event"] = "im_send_msg"
                    content = staff["content"].replace(
                        f'"from_user":{{"id":"{user}","role":"personal_account"}}',
                        f'"from_user":{{"id":"{tenant.tiktok_business_id}","role":"business_account"}}',
                    ).replace(
                        f'"to_user":{{"id":"{tenant.tiktok_business_id}","role":"business_account"}}',
                        f'"to_user":{{"id":"{user}","role":"personal_account"}}')
                    staff["content"] = content
                    body, headers = wh.sign_tiktok(staff, s.tiktok_client_secret)
                    assert (await http.post("/api/webhook/tiktok", content=body,
                                            headers=headers)).status_code == 200

                    async def handed_over():
                        found = await state()
                        return found if found and found["status"] == "human" else None

                    row = await eventually(handed_over, timeout=10)
                    assert row["agent"] == 1
