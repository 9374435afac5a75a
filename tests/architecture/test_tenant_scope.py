"""The tenant scope (`app.tenant_id`, what the row level security policies read) is set in one
place, `tistis_common.db.scope`: a second way to set it would be a second place to get the
isolation wrong."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETS_SCOPE = re.compile(r"set_config\(\s*'app\.tenant_id'")
THE_PLACE = ROOT / "libs/common/src/tistis_common/db.py"


def test_only_tistis_common_db_sets_the_tenant_scope():
    sources = [p for top in ("libs", "services", "tools", "sandbox", "tests", "bench")
               for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts]
    elsewhere = sorted(str(p.relative_to(ROOT)) for p in sources
                       if p != THE_PLACE and SETS_SCOPE.search(p.read_text(encoding="utf-8")))
    assert elsewhere == [], "use tistis_common.db.scope (or tenant_tx / tenant_session)"
