"""The event contract: the only place events are defined.

Every event is a frozen pydantic model with the envelope fields and a literal `type`.
The routing key is built from the model (`routing_key(event)`), never typed by hand:
channel-bearing events append their channel (`message.received.whatsapp`).

Events are flat (envelope fields next to the payload) rather than nested under `data`:
handlers read `event.text`, and the JSON on the wire stays easy to read in a DLQ.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    TIKTOK = "tiktok"


class Signal(StrEnum):
    """The product guide's lead scoring signals."""

    INTERESTED = "interested"
    URGENT = "urgent"
    BUDGET_MENTIONED = "budget_mentioned"
    DECISION_MAKER = "decision_maker"
    COMPARING = "comparing"
    NOT_INTERESTED = "not_interested"
    SPAM = "spam"


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    tenant_id: uuid.UUID
    occurred_at: datetime = Field(default_factory=_now)
    # The inbound message (event id) that started the chain; its own id for a chain's first event.
    correlation_id: uuid.UUID | None = None
    schema_version: int = SCHEMA_VERSION


# ---------------------------------------------------------------- messages


class MediaRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    # Set by the dispatcher's media consumer (tistis_dispatcher.media) once it fetched the file:
    # "stored" (content address `sha256`, `size` bytes) or "failed" (`error` says why). None:
    # not fetched yet, so the message is routed to that consumer first (`routing_key`).
    status: Literal["stored", "failed"] | None = None
    sha256: str | None = None
    size: int | None = None
    error: str | None = None
    transcript: str | None = None  # a voice note's text (speech-to-text), when there is one


class Location(BaseModel):
    model_config = ConfigDict(frozen=True)
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


InboundKind = Literal[
    "text", "button", "interactive", "quick_reply", "postback", "image", "audio", "video",
    "document", "sticker", "location", "contacts", "reaction", "share", "unsupported",
    "link", "order", "flow", "edit", "unsend", "system", "referral",
]
# Kinds that change or annotate what was said rather than say something: stored (and applied
# to the message they name), never answered by the AI.
ANNOTATION_KINDS = frozenset({"reaction", "edit", "unsend", "system"})


class InboundMessage(Event):
    """A message a patient (or the clinic's staff, from the native app) sent on a platform."""

    type: Literal["message.received"] = "message.received"
    channel: Channel
    platform_account_id: str  # phone_number_id, Page id, Instagram account id, TikTok business id
    platform_user_id: str  # wa_id (or BSUID), PSID, IGSID, TikTok user/open id
    platform_message_id: str
    platform_conversation_id: str | None = None  # TikTok conversation id
    sent_at: datetime
    kind: InboundKind = "text"
    text: str | None = None
    display_name: str | None = None
    phone: str | None = None
    media: MediaRef | None = None
    location: Location | None = None
    reply_to: str | None = None  # platform id of the message this one answers
    choice_id: str | None = None  # button / list row / quick reply / postback payload
    choice_title: str | None = None
    # "agent": written by clinic staff in the native app (echo not from our app). Pauses the AI.
    sender_type: Literal["lead", "agent"] = "lead"
    target_id: str | None = None  # the platform message a reaction, edit or unsend is about
    error: str | None = None  # what the platform could not deliver (unsupported, errors)
    referral: dict[str, str] | None = None  # ad / link origin (Meta referral, click-to-WhatsApp)
    details: dict[str, Any] | None = None  # structured content (contacts, order, flow answers)
    standby: bool = False  # another app owns the thread (Meta handover): stored, not answered
    new_user_id: str | None = None  # system: the patient's number (or user id) is now this
    # The patient's other ids on this channel (WhatsApp: the phone-number wa_id and the
    # business-scoped user id): one lead whichever of them a message carries.
    user_aliases: list[str] = Field(default_factory=list)


StatusValue = Literal["sent", "delivered", "read", "failed"]  # their order: vocabulary.STATUS_RANK


class MessageStatus(Event):
    """The platform's word on a message we sent (delivered, read, failed)."""

    type: Literal["message.status"] = "message.status"
    channel: Channel
    platform_account_id: str
    platform_message_id: str
    platform_user_id: str | None = None
    status: StatusValue
    status_at: datetime
    error_code: int | None = None
    error_title: str | None = None
    # "message": this one platform_message_id. "conversation": a watermark (Messenger `read`,
    # TikTok `im_mark_read_msg`): every message we sent to platform_user_id (in
    # platform_conversation_id when given) at or before status_at has this status;
    # platform_message_id then holds the conversation (or user) id it applies to.
    scope: Literal["message", "conversation"] = "message"
    platform_conversation_id: str | None = None


class OptOutChanged(Event):
    """A patient stopped (or resumed) marketing messages on a platform (WhatsApp
    `user_preferences`). Recorded on the lead (`leads.opted_out_at`); marketing sends check it."""

    type: Literal["lead.opt_out_changed"] = "lead.opt_out_changed"
    channel: Channel
    platform_account_id: str
    platform_user_id: str
    category: str = "marketing_messages"
    opted_out: bool
    changed_at: datetime
    detail: str | None = None


class Button(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    title: str


class ListRow(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    title: str
    description: str | None = None


class ListSection(BaseModel):
    model_config = ConfigDict(frozen=True)
    title: str
    rows: list[ListRow]


class TemplateRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    language: str = "es_MX"
    body_params: list[str] = Field(default_factory=list)
    # The payload of each quick-reply button the template declares, by index: a tap comes
    # back as a `button` message with that payload (the choice id).
    button_payloads: list[str] = Field(default_factory=list)


OutboundKind = Literal["text", "buttons", "list", "template", "media", "quick_replies"]
OutboundPurpose = Literal[
    "reply", "holding", "agent", "confirmation", "reminder", "followup", "marketing"
]


class OutboundMessage(Event):
    """A command to the dispatcher: send this stored message (`message_id`) to the patient."""

    type: Literal["message.outbound"] = "message.outbound"
    channel: Channel
    message_id: uuid.UUID  # row in `messages`; the dispatcher's idempotency key
    conversation_id: uuid.UUID
    lead_id: uuid.UUID
    recipient_id: str  # platform user id (wa_id / PSID / IGSID / TikTok id)
    sender_type: Literal["ai", "agent", "system"] = "ai"
    purpose: OutboundPurpose = "reply"
    kind: OutboundKind = "text"
    text: str | None = None
    buttons: list[Button] = Field(default_factory=list)
    list_button: str | None = None
    sections: list[ListSection] = Field(default_factory=list)
    template: TemplateRef | None = None
    media: MediaRef | None = None
    media_type: Literal["image", "audio", "video", "document"] | None = None
    # What to send instead when the 24 h window is closed (WhatsApp only).
    fallback_template: TemplateRef | None = None


# ------------------------------------------------------------------- leads


class LeadSignals(Event):
    type: Literal["lead.signals"] = "lead.signals"
    lead_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    signals: list[Signal]
    source: Literal["ai", "rules", "manual", "legacy"] = "ai"
    reason: str | None = None


class LeadScoreSet(Event):
    """An absolute score from outside (the legacy `update_lead_score` callback, an operator)."""

    type: Literal["lead.score_set"] = "lead.score_set"
    lead_id: uuid.UUID
    score: int
    reason: str | None = None
    source: Literal["manual", "legacy", "followup"] = "legacy"


Classification = Literal["hot", "warm", "cold"]


class LeadCreated(Event):
    """A new lead from its first message on any channel (the realtime feed shows it)."""

    type: Literal["lead.created"] = "lead.created"
    lead_id: uuid.UUID
    channel: Channel
    name: str | None = None


class LeadClassified(Event):
    type: Literal["lead.classified"] = "lead.classified"
    lead_id: uuid.UUID
    score: int
    classification: Classification
    previous: Classification | None = None
    spam: bool = False


# ----------------------------------------------------------- conversations


class ConversationEscalated(Event):
    type: Literal["conversation.escalated"] = "conversation.escalated"
    conversation_id: uuid.UUID
    lead_id: uuid.UUID | None = None
    channel: Channel | None = None
    reason: str
    source: Literal["ai", "keyword", "auto", "agent", "api", "legacy", "dispatcher"] = "ai"


class ConversationReleased(Event):
    """Handed back to the AI by staff."""

    type: Literal["conversation.released"] = "conversation.released"
    conversation_id: uuid.UUID


class ReplyRequested(Event):
    """Staff ask the AI to answer a conversation now (operator API)."""

    type: Literal["conversation.reply_requested"] = "conversation.reply_requested"
    conversation_id: uuid.UUID
    requested_by: str | None = None


DUE_NOW = "now"  # routing key suffix of a `ReplyDue` without delay


class ReplyDue(Event):
    """A reply may be owed now (ai-responder to itself): the broker holds it `delay_ms` in
    `ai-responder.debounce`, then hands it to `ai-responder.replies`. One per stored patient
    message (id from its event id) or staff request; only the latest message's answers."""

    type: Literal["conversation.reply_due"] = "conversation.reply_due"
    conversation_id: uuid.UUID
    message_id: uuid.UUID | None = None  # the stored patient message; None for a staff request
    request_id: uuid.UUID | None = None  # the ReplyRequested event
    delay_ms: int = 0  # per-message TTL in the delay queue (the burst debounce)


class ReplyStarted(Event):
    """The model has been thinking for a moment: show the patient it was read and a reply is
    being typed (the dispatcher's best-effort read / typing calls)."""

    type: Literal["conversation.reply_started"] = "conversation.reply_started"
    channel: Channel
    conversation_id: uuid.UUID
    recipient_id: str  # the patient's platform id
    platform_message_id: str | None = None  # the latest patient message (WhatsApp marks it read)


# ------------------------------------------------------------- appointments


class AppointmentRequested(Event):
    """A booking, a move or a cancellation (patient, AI, legacy callback), or staff recording
    how an appointment went (`complete` / `no_show`, operator API or CLI)."""

    type: Literal["appointment.requested"] = "appointment.requested"
    action: Literal["book", "reschedule", "cancel", "complete", "no_show"] = "book"
    lead_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    appointment_id: uuid.UUID | None = None  # reschedule / cancel
    service_id: uuid.UUID | None = None
    service_name: str | None = None
    branch_id: uuid.UUID | None = None
    branch_name: str | None = None
    preferred_dates: list[str] = Field(default_factory=list)  # ISO dates, patient's wording
    scheduled_at: datetime | None = None  # exact time (legacy callback)
    source: Literal["ai", "legacy", "api", "patient", "cli"] = "ai"


# ---------------------------------------------------------------- webhooks


class HeldItem(BaseModel):
    model_config = ConfigDict(frozen=True)
    account: str  # the platform account the item was addressed to ("" when it names none)
    kind: str
    raw: Any  # exactly as the platform sent it
    scope: dict[str, Any] = Field(default_factory=dict)
    error: str


# The tenant of items that name no known account (kept to be read, never routable).
NO_TENANT = uuid.UUID(int=0)


class WebhookItemsHeld(Event):
    """Webhook items the ingress could not read, kept for an engineer: it puts this straight
    into `ingress.webhook-items.dlq` (`tistis dlq list|show`); a replay brings it back to
    `ingress.webhook-items`, where the ingress reads the items again (after a fix)."""

    type: Literal["webhook.items_held"] = "webhook.items_held"
    channel: Channel
    items: list[HeldItem]


class TemplateStatusChanged(Event):
    """WhatsApp's `message_template_status_update`: a template of the tenant's WhatsApp
    Business Account was approved, rejected, paused, disabled... The ingress applies it to
    `whatsapp_templates` (it owns the table: tistis_ingress.api.templates)."""

    type: Literal["whatsapp.template_status"] = "whatsapp.template_status"
    business_account_id: str
    template_id: str
    name: str | None = None
    language: str | None = None
    status: str
    reason: str | None = None
    changed_at: datetime


AnyEvent = Annotated[
    InboundMessage
    | MessageStatus
    | OptOutChanged
    | OutboundMessage
    | LeadSignals
    | LeadScoreSet
    | LeadCreated
    | LeadClassified
    | ConversationEscalated
    | ConversationReleased
    | ReplyRequested
    | ReplyDue
    | ReplyStarted
    | AppointmentRequested
    | TemplateStatusChanged
    | WebhookItemsHeld,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
EVENT_TYPES: tuple[type[Event], ...] = (
    InboundMessage,
    MessageStatus,
    OptOutChanged,
    OutboundMessage,
    LeadSignals,
    LeadScoreSet,
    LeadCreated,
    LeadClassified,
    ConversationEscalated,
    ConversationReleased,
    ReplyRequested,
    ReplyDue,
    ReplyStarted,
    AppointmentRequested,
    TemplateStatusChanged,
    WebhookItemsHeld,
)


def event_type(model: type[Event]) -> str:
    return str(model.model_fields["type"].default)


# Kinds whose file is fetched and kept (tistis_dispatcher.media) before anyone else sees them.
FETCHED_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
# A patient message whose file is not fetched yet: `media.received.<channel>`, which no
# `message.received.#` binding matches; the media consumer forwards it once the file is kept.
MEDIA_PENDING_PREFIX = "media.received"
MEDIA_PENDING_PATTERN = f"{MEDIA_PENDING_PREFIX}.*"


def awaits_media(event: Event) -> bool:
    return (isinstance(event, InboundMessage) and event.kind in FETCHED_KINDS
            and event.media is not None and event.media.status is None
            and bool(event.media.id or event.media.url))


def routing_key(event: Event) -> str:
    if awaits_media(event):
        return f"{MEDIA_PENDING_PREFIX}.{event.channel.value}"  # type: ignore[attr-defined]
    key = routing_pattern(type(event), getattr(event, "channel", None))
    if isinstance(event, InboundMessage) and event.choice_id:
        # A button, list row or quick reply: the scheduler binds to these alone
        # (CHOICE_PATTERN) instead of reading every patient message.
        return f"{key}.choice"
    if isinstance(event, ReplyDue) and event.delay_ms <= 0:
        # Due now (a staff request, a debounce of 0): straight to the replies, no delay queue.
        return f"{key}.{DUE_NOW}"
    return key


# Inbound messages that choose something (`message.received.whatsapp.choice`).
CHOICE_PATTERN = "message.received.*.choice"


def routing_pattern(model: type[Event], channel: Channel | str | None = None) -> str:
    """Binding pattern for a model: `message.received.#`, `message.outbound.tiktok`, `lead.signals`."""
    kind = event_type(model)
    if kind.startswith("message."):
        return f"{kind}.{channel or '#'}"
    return kind


def parse_event(body: bytes) -> AnyEvent:
    return EVENT_ADAPTER.validate_json(body)


def dump_event(event: Event) -> bytes:
    return event.model_dump_json().encode()
