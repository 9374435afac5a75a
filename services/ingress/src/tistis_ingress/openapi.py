"""Writes the ingress's OpenAPI document to services/ingress/openapi.json (`make openapi`).
The committed file is generated, never hand-edited; tests/test_openapi_document.py fails when
it is out of step with the code. Nothing connects: the app is built on stand-ins, and the
background loops the routers start are cancelled before they do anything."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

from tistis_common.runtime import Runtime
from tistis_common.settings import Settings

from .directory import Directory
from .main import NAME, build_app
from .webhooks import WebhookIntake

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.json"


async def _document() -> dict[str, Any]:
    runtime = Runtime(Settings(), NAME)
    stand_in = cast(Any, object())
    runtime.pool, runtime.connection, runtime.publisher = stand_in, stand_in, stand_in
    try:
        intake = WebhookIntake(runtime.settings, Directory(stand_in, stand_in), stand_in)
        return build_app(runtime, intake, stand_in).openapi()
    finally:
        runtime.stopping.set()
        for task in runtime._background:
            task.cancel()
        await asyncio.gather(*runtime._background, return_exceptions=True)


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
