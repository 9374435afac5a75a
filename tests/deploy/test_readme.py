"""The README's Deploy section lists every setting, with its real default."""

from __future__ import annotations

import json
import re

from deploy_support import DEPLOY


def table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", (DEPLOY.parent / "README.md").read_text(), re.M)
    return {name: default.strip().strip("`") for name, default in rows}


def shown(default: object) -> str:
    """How the table writes a default: unset, true/false, 25 rather than 25.0, JSON lists."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, list):
        return json.dumps([shown_number(x) for x in default])
    return str(default)


def shown_number(x: object) -> object:
    return int(x) if isinstance(x, float) and x.is_integer() else x


class TestEnvironmentTable:
    def test_lists_exactly_the_settings_with_their_defaults(self) -> None:
        from tistis_common.settings import Settings

        expected = {
            name.upper(): shown(f.default_factory() if f.default_factory else f.default)
            for name, f in Settings.model_fields.items()
        }
        assert table() == expected
