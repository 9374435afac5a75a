from tistis_common.event_schema import SNAPSHOT, render
from tistis_common.events import EVENT_TYPES, event_type


class TestEventSchemaSnapshot:
    def test_the_committed_schema_is_the_models_schema(self):
        assert SNAPSHOT.read_text(encoding="utf-8") == render(), (
            "the event contract changed: run `make event-schema` and commit event-schema.json")

    def test_every_event_type_is_in_it(self):
        text = SNAPSHOT.read_text(encoding="utf-8")
        for model in EVENT_TYPES:
            assert f'"const": "{event_type(model)}"' in text, model
