"""The platforms' rules that decide, before any call, whether and how a message may go.

- WhatsApp: free-form messages within 24 h of the patient's last message; after that only a
  template (the message's own, or its `fallback_template`).
- Messenger / Instagram: RESPONSE within 24 h; after that only a human agent's message, tagged
  HUMAN_AGENT, within 7 days. Never an AI or system message (Meta bans it).
- TikTok: within the channel's window (setting `window_hours`, default 24 h).
- Opt-out: follow-ups and marketing never go to a lead who wrote a stop word or whom WhatsApp
  reports as having stopped them (131050); replies to the patient's own questions still go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tistis_common.events import OutboundMessage
from tistis_common.text import fold

WHATSAPP_WINDOW = timedelta(hours=24)
META_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
OPT_OUT_PURPOSES = frozenset({"followup", "marketing"})


@dataclass(frozen=True)
class Allowed:
    event: OutboundMessage  # possibly switched to its fallback template
    messaging_type: str = "RESPONSE"
    tag: str | None = None


@dataclass(frozen=True)
class Blocked:
    reason: str


def _inside(last_inbound_at: datetime | None, now: datetime, window: timedelta) -> bool:
    return last_inbound_at is not None and now - last_inbound_at <= window


def whatsapp_window(event: OutboundMessage, last_inbound_at: datetime | None,
                    now: datetime) -> Allowed | Blocked:
    if event.kind == "template" or _inside(last_inbound_at, now, WHATSAPP_WINDOW):
        return Allowed(event)
    if event.fallback_template is not None:
        return Allowed(event.model_copy(update={"kind": "template",
                                                "template": event.fallback_template}))
    return Blocked("whatsapp_24h_window")


def meta_window(event: OutboundMessage, last_inbound_at: datetime | None,
                now: datetime) -> Allowed | Blocked:
    if _inside(last_inbound_at, now, META_WINDOW):
        return Allowed(event, "RESPONSE")
    if event.sender_type == "agent" and _inside(last_inbound_at, now, HUMAN_AGENT_WINDOW):
        return Allowed(event, "MESSAGE_TAG", "HUMAN_AGENT")
    return Blocked("meta_7d_human_agent_window" if event.sender_type == "agent"
                   else "meta_24h_window")


def tiktok_window(event: OutboundMessage, last_inbound_at: datetime | None, now: datetime,
                  window_hours: float) -> Allowed | Blocked:
    if _inside(last_inbound_at, now, timedelta(hours=window_hours)):
        return Allowed(event)
    return Blocked("tiktok_window")


def window(event: OutboundMessage, last_inbound_at: datetime | None, now: datetime,
           tiktok_window_hours: float) -> Allowed | Blocked:
    if event.channel == "whatsapp":
        return whatsapp_window(event, last_inbound_at, now)
    if event.channel == "tiktok":
        return tiktok_window(event, last_inbound_at, now, tiktok_window_hours)
    return meta_window(event, last_inbound_at, now)


def _normalize(text: str) -> str:
    return "".join(c for c in fold(text) if c.isalnum() or c.isspace()).strip()


def is_opt_out(text: str | None, words: Iterable[str]) -> bool:
    """The whole message is a stop word ("STOP", "baja.", " Baja "), not a sentence using it."""
    if not text:
        return False
    return _normalize(text) in {_normalize(w) for w in words}


def needs_consent(event: OutboundMessage) -> bool:
    return event.purpose in OPT_OUT_PURPOSES
