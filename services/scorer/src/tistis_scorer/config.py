"""Per-tenant scoring settings: `tenants.settings -> 'scoring'`, every key optional.

    {
      "rule_set": "signals",        # or "legacy": also the guide's n8n engagement rules
      "start": 0,                   # score of a lead before its first score event
      "min": 0, "max": 100,         # the score is clamped to [min, max]
      "points": {"interested": 10, "urgent": 15, "budget_mentioned": 20, "decision_maker": 15,
                 "comparing": 5, "not_interested": -20, "spam": -50},
      "bands": {"hot": 70, "warm": 40},   # HOT >= hot, WARM >= warm, COLD below
      "engagement": {"per_message": 2, "high_value_service": 15, "booked_appointment": 20,
                     "quick_response": 10, "quick_response_hours": 24}
    }

Defaults are the product guide's table. The start is 0, the default of `leads.score`, so a lead
nobody scored yet is COLD both in the row and in the rules. The "legacy" rule set is the guide's
n8n lead scorer: base 50, engagement rules on, HOT from 80 (WARM stays 40); any key given
explicitly still wins over the preset.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tistis_common.events import Classification, Signal

GUIDE_POINTS: dict[Signal, int] = {
    Signal.INTERESTED: 10,
    Signal.URGENT: 15,
    Signal.BUDGET_MENTIONED: 20,
    Signal.DECISION_MAKER: 15,
    Signal.COMPARING: 5,
    Signal.NOT_INTERESTED: -20,
    Signal.SPAM: -50,
}

LEGACY_PRESET: dict[str, Any] = {"start": 50, "bands": {"hot": 80, "warm": 40}}


class InvalidScoringSettings(ValueError):
    """The tenant's scoring settings do not validate (an operator must fix them)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bands(_Strict):
    hot: int = 70
    warm: int = 40


class Engagement(_Strict):
    """The guide's legacy scorer, as points on top of the signals."""

    per_message: int = 2
    high_value_service: int = 15
    booked_appointment: int = 20
    quick_response: int = 10
    quick_response_hours: int = Field(default=24, gt=0)


class ScoringConfig(_Strict):
    rule_set: Literal["signals", "legacy"] = "signals"
    start: int = 0
    min: int = 0
    max: int = 100
    points: dict[Signal, int] = Field(default_factory=lambda: dict(GUIDE_POINTS))
    bands: Bands = Field(default_factory=Bands)
    engagement: Engagement = Field(default_factory=Engagement)

    @model_validator(mode="after")
    def _coherent(self) -> ScoringConfig:
        if not self.min <= self.start <= self.max:
            raise ValueError(f"start {self.start} is outside [{self.min}, {self.max}]")
        if not self.min <= self.bands.warm <= self.bands.hot <= self.max:
            raise ValueError("bands must satisfy min <= warm <= hot <= max")
        return self

    @classmethod
    def from_settings(cls, raw: dict[str, Any] | None) -> ScoringConfig:
        """The tenant's settings over the preset of its rule set over the guide's defaults."""
        raw = dict(raw or {})
        merged: dict[str, Any] = {}
        if raw.get("rule_set") == "legacy":
            merged.update({k: dict(v) if isinstance(v, dict) else v for k, v in LEGACY_PRESET.items()})
        for key, value in raw.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        # points given for some signals keep the guide's points for the others
        merged["points"] = {**{s.value: p for s, p in GUIDE_POINTS.items()}, **merged.get("points", {})}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise InvalidScoringSettings(str(exc)) from exc

    @property
    def engagement_on(self) -> bool:
        return self.rule_set == "legacy"

    def clamp(self, score: int) -> int:
        return max(self.min, min(self.max, score))

    def band(self, score: int) -> Classification:
        if score >= self.bands.hot:
            return "hot"
        if score >= self.bands.warm:
            return "warm"
        return "cold"
