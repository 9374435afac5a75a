"""Writes the ingress's OpenAPI document to services/ingress/openapi.json (`make openapi`).
The committed file is generated, never hand-edited; tests/test_openapi_document.py fails when
it is out of step with the code. Nothing connects: the app is built on stand-ins, and no
consumer or background loop is started (those are `main.start`'s)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

from tistis_common.settings import Settings

from .api.realtime import RealtimeFeed
from .deps import Deps
from .directory import Directory
from .main import build_app
from .service import WebhookIntake

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.json"


async def _document() -> dict[str, Any]:
    stand_in = cast(Any, object())
    deps = Deps(Settings(), stand_in, stand_in, directory=Directory(stand_in, stand_in),
                store=stand_in, feed=RealtimeFeed(stand_in), stopping=asyncio.Event())
    return build_app(deps, WebhookIntake(deps)).openapi()


async def render() -> str:
    return json.dumps(await _document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    text = asyncio.run(render())
    if "--check" in sys.argv:
        sys.exit(0 if DOCUMENT.exists() and DOCUMENT.read_text(encoding="utf-8") == text else 1)
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"openapi: wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
