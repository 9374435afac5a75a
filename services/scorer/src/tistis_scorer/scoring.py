"""The arithmetic of a score, free of I/O: apply points in order, clamped, one change each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tistis_common.events import Signal

from .config import ScoringConfig

SCORE_SET = "score_set"


@dataclass(frozen=True)
class Change:
    """One row of the history: what the rule asked (`rule_points`), what the score moved."""

    signal: str
    rule_points: int
    before: int
    after: int

    @property
    def points(self) -> int:
        return self.after - self.before


def signal_points(signals: Iterable[Signal], config: ScoringConfig) -> list[tuple[str, int]]:
    """Each signal once per event (the history is unique on event and signal), in given order."""
    unique = dict.fromkeys(signals)
    return [(s.value, config.points[s]) for s in unique]


def apply(score: int, items: Sequence[tuple[str, int]], config: ScoringConfig) -> list[Change]:
    changes = []
    for name, points in items:
        after = config.clamp(score + points)
        changes.append(Change(name, points, score, after))
        score = after
    return changes


def set_to(score: int, target: int, config: ScoringConfig) -> Change:
    """An absolute score from outside (legacy callback, operator, follow-ups) as one change."""
    return Change(SCORE_SET, target - score, score, config.clamp(target))
