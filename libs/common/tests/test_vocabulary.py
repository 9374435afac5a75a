import uuid
from datetime import UTC, datetime

from tistis_common.vocabulary import (
    is_scheduler_choice,
    parse_slot_choice,
    parse_tap_choice,
    slot_choice_id,
    tap_choice_id,
)


class TestChoiceIds:
    def test_a_slot_id_reads_back_and_fits_a_whatsapp_row_id(self):
        branch, service = uuid.uuid4(), uuid.uuid4()
        start = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)
        choice = slot_choice_id(branch, service, start)
        assert len(choice) < 200  # WhatsApp list row id limit
        assert parse_slot_choice(choice) == (branch, service, start)
        assert parse_slot_choice(slot_choice_id(branch, None, start)) == (branch, None, start)
        assert is_scheduler_choice(choice)

    def test_a_tap_id_reads_back(self):
        appointment = uuid.uuid4()
        assert parse_tap_choice(tap_choice_id("cancel", appointment)) == ("cancel", appointment)
        assert is_scheduler_choice(tap_choice_id("confirm", appointment))

    def test_what_is_not_ours_reads_as_none(self):
        for choice in ("", "slot:x", "slot:a:b:c", "appt:dance:" + str(uuid.uuid4()), "appt:cancel:x",
                       f"slot:{uuid.uuid4()}::2026-12-03T16:30"):
            assert parse_slot_choice(choice) is None and parse_tap_choice(choice) is None, choice
        assert not is_scheduler_choice(None) and not is_scheduler_choice("menu:1")
