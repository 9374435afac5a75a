"""Deterministic ids: a retry that re-creates something must re-create the same id."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c3b0e-7d1a-4c55-9d0c-2b8f3f0a9e11")


def stable_id(*parts: object) -> uuid.UUID:
    """uuid5 over the parts, e.g. stable_id("inbound", channel, platform_message_id)."""
    return uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts))
