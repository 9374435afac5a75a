"""The guide's legacy (n8n) lead scorer as a per-tenant rule set, on top of the signals.

    base 50 (the "legacy" preset's start), +2 per patient message, +15 when the lead is
    interested in a high-value service (services.high_value, e.g. implants), +20 with a booked
    appointment, +10 when the patient answered one of our messages within 24 h.

Each rule is evaluated from the database whenever a LeadSignals event arrives for the lead, and
what changed since the last evaluation is recorded as its own history row (signal
`engagement.<rule>`, source "rules"): a third message adds +2 once, a cancelled appointment
takes its 20 back. What a rule already gave is the sum of its earlier `rule_points`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import Engagement

PREFIX = "engagement."


@dataclass(frozen=True)
class EngagementFacts:
    inbound_messages: int
    high_value_service: bool
    booked_appointment: bool
    quick_response: bool


def rule_values(facts: EngagementFacts, points: Engagement) -> dict[str, int]:
    """What each rule is worth for the lead now."""
    return {
        f"{PREFIX}messages": facts.inbound_messages * points.per_message,
        f"{PREFIX}high_value_service": points.high_value_service if facts.high_value_service else 0,
        f"{PREFIX}booked_appointment": points.booked_appointment if facts.booked_appointment else 0,
        f"{PREFIX}quick_response": points.quick_response if facts.quick_response else 0,
    }


def owed(now: Mapping[str, int], credited: Mapping[str, int]) -> list[tuple[str, int]]:
    """The difference between what each rule is worth now and what it already gave."""
    return [(rule, value - credited.get(rule, 0)) for rule, value in now.items()
            if value != credited.get(rule, 0)]
