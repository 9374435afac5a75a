"""Finding the service and branch a patient (or the AI) named: by id, else by name without
caring about accents or case ("limpieza" finds "Limpieza dental", "Nogales" finds "ESVA Nogales")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from tistis_common.text import fold as text_fold

from .availability import Branch

DEFAULT_DURATION = timedelta(minutes=60)


def fold(text: str) -> str:
    """Lower case without accents, single spaces: 'Ortodoncía ' -> 'ortodoncia'."""
    return " ".join(text_fold(text).split())


@dataclass(frozen=True)
class Service:
    id: uuid.UUID | None
    name: str | None
    duration: timedelta
    keywords: tuple[str, ...] = ()


def _match(query: str, names: list[tuple[str, list[str]]]) -> int | None:
    """Index of the best match: same name, then one name inside the other, then a keyword."""
    q = fold(query)
    folded = [(fold(n), [fold(k) for k in kws]) for n, kws in names]
    for test in (
        lambda n, k: n == q,
        lambda n, k: q in n or n in q,
        lambda n, k: any(kw and (kw in q or q in kw) for kw in k),
    ):
        hits = [i for i, (n, k) in enumerate(folded) if test(n, k)]
        if hits:
            return hits[0]
    return None


def resolve_service(services: list[Service], service_id: uuid.UUID | None,
                    name: str | None) -> Service:
    """The named service; the only one if the clinic has one; else no service (60 minutes)."""
    by_id = {s.id: s for s in services}
    found = by_id.get(service_id) if service_id else None
    if found is None and name:
        i = _match(name, [(s.name or "", list(s.keywords)) for s in services])
        found = services[i] if i is not None else None
    if found is None and len(services) == 1:
        found = services[0]
    return found or Service(None, None, DEFAULT_DURATION)


def resolve_branches(all_branches: list[Branch], branch_id: uuid.UUID | None,
                     name: str | None) -> list[Branch]:
    """The named branch, or every branch when none was named (the earliest fit wins)."""
    if branch_id:
        hit = [b for b in all_branches if b.id == branch_id]
        if hit:
            return hit
    if name:
        i = _match(name, [(b.name, []) for b in all_branches])
        if i is not None:
            return [all_branches[i]]
    return all_branches
