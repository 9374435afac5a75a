"""Signed webhooks from many tenants, channels and patients, delivered the way platforms do:
retried until they get a 200, and sometimes sent again after it (duplicates)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import aiohttp
from tistis_sandbox import webhooks as wh

from .cluster import APP_SECRET, ChaosTenant

CHANNELS = ("whatsapp", "facebook", "instagram", "tiktok")


@dataclass
class Webhook:
    tenant: ChaosTenant
    channel: str
    user: str  # platform user id of the patient
    message_id: str
    payload: dict
    recipient: str  # who the reply goes to at the fake platform
    accepted_at: float | None = None
    answers: list[int] = field(default_factory=list)

    def signed(self) -> wh.SignedWebhook:
        if self.channel == "tiktok":
            return wh.sign_tiktok(self.payload, APP_SECRET)  # re-signed per try, like TikTok
        return wh.sign_meta(self.payload, APP_SECRET)

    @property
    def path(self) -> str:
        return f"/api/webhook/{self.channel}/{self.tenant.slug}"


def build(tenants: list[ChaosTenant], patients_per_tenant: int, seed: int = 7) -> list[Webhook]:
    """One message per patient (so each should get exactly one reply)."""
    rnd = random.Random(seed)
    out = []
    for tenant in tenants:
        for i in range(patients_per_tenant):
            channel = CHANNELS[i % len(CHANNELS)]
            text = rnd.choice(["Hola, quiero una cita para limpieza", "¿Cuánto cuesta un implante?",
                               "Buenas tardes, ¿tienen horario el sábado?", "Hello, do you do whitening?"])
            acc = tenant.accounts[channel]
            if channel == "whatsapp":
                user = f"521{rnd.randrange(10**9, 10**10)}"
                msg = wh.wa_text(user, text)
                payload = wh.whatsapp_payload([msg], phone_number_id=acc, name=f"Paciente {i}")
                out.append(Webhook(tenant, channel, user, msg["id"], payload, user))
            elif channel in ("facebook", "instagram"):
                user = wh.psid()
                build_fn = wh.messenger_payload if channel == "facebook" else wh.instagram_payload
                kw = {"page_id": acc} if channel == "facebook" else {"ig_id": acc}
                payload = build_fn(text, sender_id=user, **kw)
                mid = payload["entry"][0]["messaging"][0]["message"]["mid"]
                out.append(Webhook(tenant, channel, user, mid, payload, user))
            else:
                user = f"tt-user-{rnd.randrange(10**12)}"
                conversation = wh.tiktok_conversation_id(user)
                payload = wh.tiktok_payload(text, user_id=user, business_id=acc,
                                            conversation_id=conversation)
                mid = json.loads(payload["content"])["message_id"]
                out.append(Webhook(tenant, channel, user, mid, payload, conversation))
    rnd.shuffle(out)
    return out


@dataclass
class Stats:
    sent: int = 0
    accepted: int = 0
    duplicates_sent: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    seconds: float = 0.0


async def deliver(http: aiohttp.ClientSession, hook: Webhook, stats: Stats,
                  give_up_after: float) -> None:
    """Like a platform: retry with backoff until a 200 (or give up), never fewer than one try."""
    deadline = time.monotonic() + give_up_after
    delay = 0.2
    while True:
        body, headers = hook.signed()
        stats.sent += 1
        try:
            async with http.post(hook.path, data=body, headers=headers) as answer:
                await answer.read()
                hook.answers.append(answer.status)
            if answer.status == 200:
                hook.accepted_at = hook.accepted_at or time.monotonic()
                return
            stats.refused[answer.status] = stats.refused.get(answer.status, 0) + 1
        except (aiohttp.ClientError, TimeoutError):
            stats.transport_errors += 1
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def drive(base_url: str, hooks: list[Webhook], *, concurrency: int = 16,
                duplicate_ratio: float = 0.2, rate: float | None = None,
                give_up_after: float = 120, seed: int = 11) -> Stats:
    """Deliver every hook once (then a share of them again), at most `rate` per second.

    aiohttp rather than httpx: the load generator shares the machine's cores with what it
    measures, and aiohttp's client costs about a third of httpx's CPU per request.
    """
    rnd = random.Random(seed)
    stats = Stats()
    queue: asyncio.Queue[Webhook | None] = asyncio.Queue()
    started = time.monotonic()

    async def worker(http: aiohttp.ClientSession) -> None:
        while (hook := await queue.get()) is not None:
            await deliver(http, hook, stats, give_up_after)
            if hook.accepted_at and rnd.random() < duplicate_ratio:
                stats.duplicates_sent += 1
                await deliver(http, hook, stats, give_up_after)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=15)) as http:
        workers = [asyncio.create_task(worker(http)) for _ in range(concurrency)]
        for i, hook in enumerate(hooks):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            await queue.put(hook)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    stats.accepted = sum(1 for h in hooks if h.accepted_at)
    stats.seconds = time.monotonic() - started
    return stats
