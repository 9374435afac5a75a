"""The webhook's decisions, whichever door the request came in by (`handlers.py`): which secret
signed a delivery, which tenant each item goes to and whether the signature may address it,
each item normalized by its channel's adapter (`channels/`), what is published, held or only
counted, and what the platform is answered.

Routing: Meta sends the entries of every Page, Instagram account and WhatsApp number of an app
in one POST, so each item is routed to the tenant that owns its account id, whichever URL it
came to. In order, after the body is read (413, `handlers.read_limited`): tenant of the slug if
any (404; the slug's format is checked before any lookup), signature over the raw body (401, a
stale TikTok timestamp included), JSON (400), the platform's shape (400), then each item routed
by its account:
- the signature decides what may be addressed: the shared app secret (settings) every
  connection without its own secret; a connection's own secret only the connections that hold
  it. An account beyond the signature's reach makes the delivery 403 (`cross_tenant`): only
  someone holding one clinic's secret can produce it.
- an account no tenant owns: acknowledged, counted (`unknown_account`), logged, never stored.
- an item that cannot be read: the others go on; it is counted (`held`), logged, and kept raw
  in `ingress.webhook-items.dlq` (`tistis dlq list|show|replay`), confirmed before the 200.
Every event is published with a broker confirm, and only then 200. Echoes of our own sends and
kinds we do not handle are acknowledged (200) and counted, never published.

Failure answers follow the platforms' retry semantics: Meta and TikTok retry any non-200 for
hours, so a transient failure (broker down, a confirm refused, the database not answering) is
503 and the retry is stored once downstream (stable event ids). Input that can never succeed is
4xx. An unexpected exception is answered 503 and counted as `error` (`handlers.receive`):
retrying is harmless, and a 500 would tell nothing more. No path answers 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tistis_common import metrics
from tistis_common.broker import (
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_ORIGINAL_KEY,
    H_ORIGINAL_QUEUE,
)
from tistis_common.events import (
    NO_TENANT,
    Channel,
    Event,
    HeldItem,
    WebhookItemsHeld,
    dump_event,
    routing_key,
)
from tistis_common.logging import get_logger
from tistis_common.topology import INGRESS_ITEMS

from .channels.base import (
    ChannelAdapter,
    Item,
    MalformedPayload,
    Normalized,
    Routing,
    StaleSignature,
    load_json,
)
from .channels.meta_messaging import FacebookAdapter, InstagramAdapter
from .channels.tiktok import TikTokAdapter
from .channels.whatsapp import WhatsAppAdapter
from .recent import RecentlyConfirmed

if TYPE_CHECKING:
    from starlette.datastructures import Headers
    from tistis_common.settings import Settings

    from .deps import Deps
    from .repository import Connection, Tenant

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the platform is told: the HTTP status and the body `handlers.WebhookAnswer`
    documents; `challenge` is the handshake's echo, sent alone as plain text."""

    status: int
    outcome: str
    events: int = 0
    detail: str | None = None
    challenge: str | None = None


def build_adapters(settings: Settings) -> dict[str, ChannelAdapter]:
    adapters: list[ChannelAdapter] = [
        WhatsAppAdapter(), FacebookAdapter(), InstagramAdapter(),
        TikTokAdapter(settings.tiktok_signature_tolerance_seconds),
    ]
    return {a.channel.value: a for a in adapters}


def shared_secret(channel: str, settings: Settings) -> str | None:
    """The platform app's secret from the settings: every connection without its own uses it."""
    return settings.tiktok_client_secret if channel == Channel.TIKTOK else settings.meta_app_secret


def _our_app_ids(channel: str, connection: Connection, settings: Settings) -> frozenset[str]:
    ids = {connection.app_id} if connection.app_id else set()
    if channel != Channel.TIKTOK and settings.meta_app_id:
        ids.add(settings.meta_app_id)
    return frozenset(ids)


# At most this many accounts of an unverified delivery are looked up to find the connection
# secret it may be signed with (a clinic's own app names its own few accounts): an unsigned
# post costs a bounded number of queries.
MAX_SIGNER_LOOKUPS = 5


@dataclass
class Held:
    """An item that could not be read: kept raw in the dead-letter queue for an engineer."""

    item: Item
    tenant_id: uuid.UUID | None
    error: Exception

    def kept(self) -> HeldItem:
        return HeldItem(account=self.item.account, kind=self.item.kind, raw=self.item.raw,
                        scope=self.item.scope,
                        error=f"{type(self.error).__name__}: {self.error}"[:2000])


class WebhookIntake:
    """The POST pipeline and the GET handshake, independent of which door the request came in
    by (`handlers.WebhookFastPath` or `handlers.webhook_router`)."""

    def __init__(self, deps: Deps):
        self.settings = deps.settings
        self.directory = deps.directory
        self.adapters = build_adapters(deps.settings)
        self.recent = RecentlyConfirmed()
        self.publisher = deps.publisher
        self._counters: dict[tuple[str, ...], Any] = {}

    def _count(self, metric: Any, *labels: str) -> Any:
        # Labelled children cached: `.labels()` takes a lock and builds a tuple every call.
        key = (metric._name, *labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*labels)
        return child

    def answer(self, channel: str, outcome: str, status: int, detail: str | None = None,
               tenant: Tenant | None = None, events: int = 0) -> Answer:
        self._count(metrics.WEBHOOKS, channel, outcome).inc()
        if tenant is not None:
            self._count(metrics.WEBHOOKS_BY_TENANT, tenant.slug, channel, outcome).inc()
        if status >= 400:
            log.info("webhook.refused", channel=channel, outcome=outcome, status=status,
                     detail=detail, tenant=tenant.slug if tenant else None)
        return Answer(status, outcome, events, detail)

    async def verify(self, channel: str, tenant_slug: str | None, mode: str | None,
                     token: str | None, challenge: str | None) -> Answer:
        tenant = None
        tokens: set[str | None] = set()
        if tenant_slug is None:  # the app's callback URL: the app-level verify token
            tokens.add(self.settings.webhook_verify_token)
        else:
            try:
                tenant = await self.directory.tenant(tenant_slug)
                if tenant is None:
                    return self.answer(channel, "unknown_tenant", 404, "unknown tenant")
                tokens |= {c.verify_token
                           for c in await self.directory.connections(tenant.id, channel)}
            except Exception as exc:
                log.error("webhook.verify_unavailable", channel=channel, error=repr(exc))
                return self.answer(channel, "unavailable", 503, "try again later")
        if channel == Channel.WHATSAPP and self.settings.whatsapp_verify_token:
            tokens.add(self.settings.whatsapp_verify_token)
        tokens.discard(None)
        if mode == "subscribe" and token and challenge is not None and token in tokens:
            self._count(metrics.WEBHOOKS, channel, "verified").inc()
            return Answer(200, "verified", challenge=challenge)
        return self.answer(channel, "verify_failed", 403, "verification failed", tenant)

    def observe_duration(self, channel: str, started: float) -> None:
        """A POST's seconds, from `started` (a `time.perf_counter()`), into its histogram."""
        self._count(metrics.WEBHOOK_SECONDS, channel).observe(time.perf_counter() - started)

    async def receive(self, channel: str, tenant_slug: str | None, headers: Headers,
                      body: bytes) -> Answer:
        """A platform's webhook, its body read: verified, routed, normalized, published with
        broker confirms."""
        answer = self.answer
        adapter = self.adapters[channel]
        tenant = None
        try:
            if tenant_slug is not None:
                tenant = await self.directory.tenant(tenant_slug)
                if tenant is None:
                    return answer(channel, "unknown_tenant", 404, "unknown tenant")
            try:
                signer, payload = await self._signer(channel, adapter, headers, body, tenant)
            except StaleSignature:
                return answer(channel, "bad_signature", 401, "stale signature timestamp", tenant)
            if signer is None:
                return answer(channel, "bad_signature", 401, "invalid signature", tenant)
            if payload is None:
                try:
                    payload = load_json(body)
                except (UnicodeDecodeError, ValueError, RecursionError):
                    return answer(channel, "malformed", 400, "body is not JSON", tenant)
            try:
                items = adapter.items(payload)
            except MalformedPayload:
                return answer(channel, "malformed", 400, f"not a {channel} webhook", tenant)
            connections = {a: await self.directory.connection(channel, a)
                           for a in dict.fromkeys(i.account for i in items if i.account)}
        except Exception as exc:  # database down: transient
            log.error("webhook.directory_unavailable", channel=channel, error=repr(exc))
            return answer(channel, "unavailable", 503, "try again later", tenant)
        shared = shared_secret(channel, self.settings)
        beyond = sorted(a for a, c in connections.items()
                        if c is not None and (c.app_secret or shared) != signer)
        if beyond:
            log.warning("webhook.cross_tenant", channel=channel, accounts=beyond[:10],
                        tenant=tenant.slug if tenant else None)
            return answer(channel, "cross_tenant", 403,
                          "an account is not one this signature may address", tenant)
        out, held, unknown = self._read(channel, items, connections, tenant)
        return await self._deliver(channel, tenant, out, held, unknown)

    def _read(self, channel: str, items: list[Item], connections: dict[str, Connection | None],
              tenant: Tenant | None) -> tuple[Normalized, list[Held], set[str]]:
        """Each item under its account's tenant; one that cannot be read is held, alone."""
        adapter = self.adapters[channel]
        out, held, unknown = Normalized(), list[Held](), set[str]()
        for item in items:
            if item.kind == "ignored":  # a field or test event we do not handle, for no account
                out.ignore(item.raw)
                continue
            connection = connections.get(item.account)
            if connection is None and item.account:
                unknown.add(item.account)
                continue
            part = Normalized()
            try:
                if connection is None:
                    raise MalformedPayload(f"{item.kind} names no account")
                routing = Routing(connection.tenant_id, _our_app_ids(channel, connection,
                                                                     self.settings))
                adapter.normalize(item, routing, part)
            except Exception as exc:  # this item only: kept for an engineer, the rest goes on
                held.append(Held(item, connection.tenant_id if connection else
                                 (tenant.id if tenant else None), exc))
                continue
            out.events.extend(part.events)
            out.ignored.extend(part.ignored)
            out.echoes += part.echoes
        return out, held, unknown

    async def replay(self, event: WebhookItemsHeld) -> list[Event]:
        """Held items brought back by `tistis dlq replay`: read again (after a fix); what
        still cannot be read is held again, the rest is published by the consumer runner."""
        items = [Item(i.account, i.kind, i.raw, i.scope) for i in event.items]
        connections = {a: await self.directory.connection(event.channel, a)
                       for a in dict.fromkeys(i.account for i in items if i.account)}
        out, held, unknown = self._read(event.channel, items, connections, None)
        if unknown:
            log.warning("webhook.replay_unknown_account", accounts=sorted(unknown)[:10])
        await self._hold(event.channel, held)
        log.info("webhook.items_replayed", items=len(items), events=len(out.events),
                 held=len(held))
        return list(out.events)

    async def _signer(self, channel: str, adapter: ChannelAdapter, headers: Headers, body: bytes,
                      tenant: Tenant | None) -> tuple[str | None, Any]:
        """The secret that signed the body (None: none of those it may be signed with), and
        the payload when it had to be read to find that secret.

        The shared app secret first (no lookup at all); then the own secrets of the slug's
        connections, then of the connections the body names (a clinic's own app on the
        app-level URL). Raises StaleSignature for a right signature over a stale timestamp."""
        shared = shared_secret(channel, self.settings)
        if shared and adapter.verify_signature(headers, body, shared):
            return shared, None
        candidates: list[Connection] = []
        if tenant is not None:
            candidates += await self.directory.connections(tenant.id, channel)
        payload: Any = None
        try:
            payload = load_json(body)
            accounts = list(dict.fromkeys(i.account for i in adapter.items(payload) if i.account))
        except (UnicodeDecodeError, ValueError, RecursionError):
            accounts = []
        for account in accounts[:MAX_SIGNER_LOOKUPS]:
            found = await self.directory.connection(channel, account)
            if found is not None:
                candidates.append(found)
        for secret in dict.fromkeys(c.app_secret for c in candidates if c.app_secret):
            if secret and secret != shared and adapter.verify_signature(headers, body, secret):
                return secret, payload
        return None, None

    async def _deliver(self, channel: str, tenant: Tenant | None, out: Normalized,
                       held: list[Held], unknown: set[str]) -> Answer:
        answer = self.answer
        if unknown:  # nobody's account: acknowledged so the platform stops, never stored
            self._count(metrics.WEBHOOK_EVENTS, channel, "unknown_account").inc(len(unknown))
            log.warning("webhook.unknown_account", channel=channel, accounts=sorted(unknown)[:10])
        for kind in out.ignored:
            self._count(metrics.WEBHOOK_EVENTS, channel, "ignored").inc()
            log.debug("webhook.ignored_kind", channel=channel, kind=kind)
        if out.echoes:
            self._count(metrics.WEBHOOK_EVENTS, channel, "echo").inc(out.echoes)
        events = out.events
        if not events and not held:
            outcome = ("unknown_account" if unknown and not out.ignored and not out.echoes
                       else "echo" if out.echoes and not out.ignored else "ignored")
            return answer(channel, outcome, 200, None, tenant)
        ids = [e.event_id for e in events]
        if not held and self.recent.all_seen(ids):
            return answer(channel, "duplicate", 200, None, tenant, len(events))
        confirm_started = time.perf_counter()
        try:
            await asyncio.gather(self.publisher.publish_all(events), self._hold(channel, held))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker down, confirm refused, timeout: let the platform retry
            log.error("webhook.publish_failed", channel=channel, error=repr(exc))
            return answer(channel, "unavailable", 503, "try again later", tenant)
        self._count(metrics.WEBHOOK_CONFIRM_SECONDS, channel).observe(
            time.perf_counter() - confirm_started)
        self.recent.add(ids)
        for event in events:
            self._count(metrics.WEBHOOK_EVENTS, channel, event.type).inc()  # type: ignore[attr-defined]
        return answer(channel, "accepted", 200, None, tenant, len(events))

    async def _hold(self, channel: str, held: list[Held]) -> None:
        """One dead letter per tenant of the delivery (a hostile batch of a thousand broken
        items is one message, not a thousand), each confirmed by the broker."""
        by_tenant: dict[uuid.UUID, list[Held]] = {}
        for h in held:
            by_tenant.setdefault(h.tenant_id or NO_TENANT, []).append(h)
            self._count(metrics.WEBHOOK_EVENTS, channel, "held").inc()
            log.warning("webhook.item_held", channel=channel, account=h.item.account,
                        kind=h.item.kind, tenant_id=str(h.tenant_id) if h.tenant_id else None,
                        error=f"{type(h.error).__name__}: {h.error}"[:500])
        sends = []
        for tenant_id, group in by_tenant.items():
            kept = [h.kept() for h in group]
            event = WebhookItemsHeld(tenant_id=tenant_id, channel=Channel(channel), items=kept)
            headers = {H_ERROR: kept[0].error, H_ERROR_TYPE: type(group[0].error).__name__,
                       H_FAILED_AT: datetime.now(UTC).isoformat(),
                       H_ORIGINAL_QUEUE: INGRESS_ITEMS.name,
                       H_ORIGINAL_KEY: routing_key(event), "tenant_id": str(tenant_id),
                       "channel": channel}
            sends.append(self.publisher.send_to_queue(
                INGRESS_ITEMS.dlq, dump_event(event), headers,
                {"content_type": "application/json", "message_id": str(event.event_id),
                 "type": event.type}))
        await asyncio.gather(*sends)
