"""The JSON Schema of every event (the contract as other teams and tools read it), written to
`libs/common/event-schema.json` by `make event-schema`. A test keeps the committed snapshot in
step with the models, so that a contract change shows in review as a change of that file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tistis_common.events import EVENT_ADAPTER

SNAPSHOT = Path(__file__).resolve().parents[2] / "event-schema.json"


def render() -> str:
    return json.dumps(EVENT_ADAPTER.json_schema(mode="serialization"), indent=2,
                      sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    SNAPSHOT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {SNAPSHOT}\n")


if __name__ == "__main__":
    main()
