"""The scorer's one consumer entry point: a score event (signals or an absolute score) for one
lead, scored by `service.apply_score_event`; the runner publishes the LeadClassified it returns."""

from __future__ import annotations

from collections.abc import Sequence

from tistis_common.events import Event, LeadScoreSet, LeadSignals

from . import service
from .deps import Deps


async def handle_score_event(event: LeadSignals | LeadScoreSet, deps: Deps) -> Sequence[Event]:
    return await service.apply_score_event(event, deps)
