"""Event ids the broker already confirmed, remembered briefly (bounded LRU).

A platform that retries a webhook we already answered (its 200 got lost, or it retries every
entry of a batch) gets its 200 without publishing again: the first copy is durable in the
broker. This is only a saving and a metric (`duplicate`); correctness rests on the downstream
consumers dropping repeated ids, since other ingress replicas do not share this memory.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable


class RecentlyConfirmed:
    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        # Keys are the ids' 128-bit ints, not UUID objects: ints are not tracked by the garbage
        # collector, so 50k of them add nothing to a full collection's pause.
        self._ids: OrderedDict[int, None] = OrderedDict()

    def all_seen(self, ids: Iterable[uuid.UUID]) -> bool:
        keys = [i.int for i in ids]
        return bool(keys) and all(k in self._ids for k in keys)

    def add(self, ids: Iterable[uuid.UUID]) -> None:
        for i in ids:
            self._ids[i.int] = None
            self._ids.move_to_end(i.int)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
