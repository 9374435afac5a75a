"""Request and response models of the inbox API (they make its OpenAPI document typed)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .common import CleanStr

Role = Literal["admin", "agent"]
Language = Literal["es", "en"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_In):
    tenant: CleanStr = Field(min_length=2, max_length=63)
    email: CleanStr = Field(min_length=3, max_length=254)
    password: CleanStr = Field(min_length=1, max_length=200)


class StaffUser(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    language: Language
    disabled_at: datetime | None = None


class Me(BaseModel):
    user: StaffUser | None  # None: a tenant key from the CLI
    tenant_id: uuid.UUID
    tenant_slug: str
    tenant_name: str
    tenant_timezone: str
    role: Role
    via: Literal["session", "key"]


class NewUser(_In):
    email: CleanStr = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    name: CleanStr = Field(min_length=1, max_length=200)
    role: Role = "agent"
    password: CleanStr = Field(min_length=10, max_length=200)
    language: Language = "es"


class UserList(BaseModel):
    users: list[StaffUser]


class ApiKey(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class NewKey(_In):
    name: CleanStr = Field(min_length=1, max_length=100)


class IssuedKey(BaseModel):
    id: uuid.UUID
    key: str  # shown once


class KeyList(BaseModel):
    keys: list[ApiKey]


# ----------------------------------------------------------------- conversations

Filter = Literal["open", "needs_human", "ai", "mine", "unassigned", "closed", "all"]


class ConversationSummary(BaseModel):
    id: uuid.UUID
    channel: str
    status: str
    escalation_reason: str | None
    needs_attention: bool
    attention_reason: str | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    created_at: datetime
    activity: datetime
    lead_id: uuid.UUID
    lead_name: str | None
    phone: str | None
    platform_user_id: str
    score: int
    classification: str
    assigned_to: uuid.UUID | None
    assignee_name: str | None
    assigned_to_me: bool
    labels: list[str]
    closed: bool
    unread: int
    last_message: str | None
    window_open: bool  # free text may go (WhatsApp 24 h, Messenger/Instagram 7 days for staff)


class UnreadCounts(BaseModel):
    open: int
    needs_human: int
    mine: int


class ConversationPage(BaseModel):
    conversations: list[ConversationSummary]
    next_cursor: str | None
    unread: UnreadCounts


class Message(BaseModel):
    id: uuid.UUID
    direction: str
    sender_type: str
    kind: str
    content: str | None
    status: str
    purpose: str | None
    error_code: int | None
    error_title: str | None
    created_at: datetime


class Note(BaseModel):
    id: uuid.UUID
    body: str
    author_id: uuid.UUID | None
    author_name: str | None = None
    created_at: datetime


class Action(BaseModel):
    action: str
    user_id: uuid.UUID | None
    user_name: str | None
    detail: dict
    created_at: datetime


class ConversationDetail(BaseModel):
    conversation: ConversationSummary
    messages: list[Message]
    notes: list[Note]
    actions: list[Action]


class Queued(BaseModel):
    status: Literal["queued", "done"]
    event_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None


class Assign(_In):
    user_id: uuid.UUID | None  # None: unassign


class Reply(_In):
    text: CleanStr = Field(min_length=1, max_length=4096)
    client_message_id: CleanStr | None = Field(None, min_length=1, max_length=200)


class TemplateSend(_In):
    name: CleanStr = Field(min_length=1, max_length=512)
    language: CleanStr = Field("es_MX", min_length=2, max_length=15)
    params: list[CleanStr] = Field(default_factory=list, max_length=20)
    client_message_id: CleanStr | None = Field(None, min_length=1, max_length=200)


class NewNote(_In):
    body: CleanStr = Field(min_length=1, max_length=4000)


class Labels(_In):
    labels: list[CleanStr] = Field(max_length=20)


class CannedReply(BaseModel):
    id: uuid.UUID
    shortcut: str
    body: str


class NewCannedReply(_In):
    shortcut: CleanStr = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    body: CleanStr = Field(min_length=1, max_length=4096)


class CannedReplyList(BaseModel):
    replies: list[CannedReply]


class Template(BaseModel):
    template_id: str
    name: str
    language: str
    category: str | None
    status: str
    body: str | None
    params: int
    updated_at: datetime


class TemplateList(BaseModel):
    templates: list[Template]


# ------------------------------------------------------------ appointments, leads, reports


class Branch(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str


class BranchList(BaseModel):
    branches: list[Branch]


class Appointment(BaseModel):
    id: uuid.UUID
    lead_id: uuid.UUID
    lead_name: str | None
    phone: str | None
    scheduled_at: datetime
    ends_at: datetime
    status: str
    service_name: str | None
    conversation_id: uuid.UUID | None
    needs_attention: bool


class AppointmentDay(BaseModel):
    branch_id: uuid.UUID
    date: str
    appointments: list[Appointment]


class Reschedule(_In):
    scheduled_at: datetime  # without an offset: the branch's local time


class PersonLead(BaseModel):
    id: uuid.UUID
    channel: str
    platform_user_id: str
    name: str | None
    phone: str | None
    score: int
    classification: str
    linked_to: uuid.UUID | None


class ScoreChange(BaseModel):
    lead_id: uuid.UUID
    signal: str
    points: int
    score_before: int
    score_after: int
    source: str
    reason: str | None
    created_at: datetime


class LeadAppointment(BaseModel):
    id: uuid.UUID
    lead_id: uuid.UUID
    scheduled_at: datetime
    status: str
    branch_name: str
    service_name: str | None


class LeadView(BaseModel):
    lead: PersonLead
    score: int
    classification: str
    spam: bool
    interested_services: list[str]
    leads: list[PersonLead]  # the same person on every channel (phone match or merged by hand)
    score_history: list[ScoreChange]
    conversations: list[ConversationSummary]
    appointments: list[LeadAppointment]


class Merge(_In):
    lead_id: uuid.UUID  # this lead joins the person of the lead in the path


class ReportRow(BaseModel):
    day: str
    channel: str
    conversations: int
    first_response_p50: float | None  # seconds
    first_response_p90: float | None
    by_ai: int
    by_fallback: int
    by_staff: int
    share_ai: float | None
    share_fallback: float | None
    share_staff: float | None
    escalations: dict[str, int]
    bookings: int
    no_shows: int


class Report(BaseModel):
    timezone: str
    start: str
    end: str
    rows: list[ReportRow]


class Outreach(_In):
    phone: CleanStr = Field(pattern=r"^\+?[0-9 ()-]{8,20}$")
    name: CleanStr | None = Field(None, max_length=200)
    template: TemplateSend
