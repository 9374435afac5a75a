import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from tistis_common.events import (
    EVENT_TYPES,
    Channel,
    InboundMessage,
    LeadSignals,
    OutboundMessage,
    dump_event,
    parse_event,
    routing_key,
    routing_pattern,
)


def inbound(**kw):
    return InboundMessage(
        tenant_id=uuid.uuid4(), channel=Channel.WHATSAPP, platform_account_id="1",
        platform_user_id="5215512345678", platform_message_id="wamid.X",
        sent_at=datetime.now(UTC), text="Hola", **kw,
    )


class TestContract:
    def test_round_trip_through_the_union(self):
        event = inbound()
        assert parse_event(dump_event(event)) == event

    def test_routing_keys_are_built_from_the_model(self):
        assert routing_key(inbound()) == "message.received.whatsapp"
        assert routing_pattern(OutboundMessage, "tiktok") == "message.outbound.tiktok"
        assert routing_pattern(InboundMessage) == "message.received.#"
        assert routing_key(inbound(choice_id="slot:1")) == "message.received.whatsapp.choice"
        assert routing_pattern(LeadSignals) == "lead.signals"

    def test_events_are_frozen_and_strict(self):
        event = inbound()
        with pytest.raises(ValidationError):
            event.text = "changed"  # type: ignore[misc]
        with pytest.raises(ValidationError):
            parse_event(b'{"type": "message.received", "unexpected": 1}')

    def test_every_event_type_is_unique(self):
        types = [m.model_fields["type"].default for m in EVENT_TYPES]
        assert len(types) == len(set(types))
