"""The table ownership declaration (`tistis_common.ownership`) against the SQL the code runs:
every write statement in a package's source is to a table that package may write, and every
other writer declared still writes (a stale line would mislead the next reader)."""

from __future__ import annotations

import re
from pathlib import Path

from tistis_common.ownership import TABLES

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "libs/common/src/tistis_common/migrations"
SOURCES = {
    "ingress": "services/ingress/src", "ai-responder": "services/ai-responder/src",
    "dispatcher": "services/dispatcher/src", "scorer": "services/scorer/src",
    "scheduler": "services/scheduler/src", "cli": "tools/cli/src",
}
WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_]+)")
CREATED = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", re.I)
RENAMED = re.compile(r"ALTER TABLE (?:IF EXISTS )?([a-z_]+) RENAME TO ([a-z_]+)", re.I)


def tables_in_schema() -> set[str]:
    tables: set[str] = set()
    for sql in sorted(MIGRATIONS.glob("*.sql")):
        text = sql.read_text(encoding="utf-8")
        tables |= set(CREATED.findall(text))
        for old, new in RENAMED.findall(text):
            tables.discard(old)
            tables.add(new)
    return tables


def writes() -> dict[tuple[str, str], list[str]]:
    """(writer, table) -> the files that write it. libs/common modules are writers by name."""
    files = [(who, path) for who, root in SOURCES.items() for path in (ROOT / root).rglob("*.py")]
    files += [(f"tistis_common.{p.stem}", p)
              for p in (ROOT / "libs/common/src/tistis_common").glob("*.py")]
    known, found = tables_in_schema(), {}
    for who, path in files:
        for table in WRITE.findall(path.read_text(encoding="utf-8")):
            if table in known:
                found.setdefault((who, table), []).append(path.name)
    return found


class TestTableOwnership:
    def test_every_table_has_a_declared_owner(self):
        assert tables_in_schema() - set(TABLES) == set()
        # schema_migrations is created by the migrator itself, before any migration runs
        assert set(TABLES) - tables_in_schema() == {"schema_migrations"}, "declared, not in schema"

    def test_nobody_writes_a_table_it_is_not_declared_to_write(self):
        undeclared = sorted(f"{who} writes {table} ({', '.join(files)})"
                            for (who, table), files in writes().items()
                            if who not in TABLES[table].writers())
        assert undeclared == [], "declare it in tistis_common.ownership, with why"

    def test_every_other_writer_declared_still_writes(self):
        found = writes()
        stale = sorted(f"{who} on {table}" for table, ownership in TABLES.items()
                       for who in ownership.also if (who, table) not in found)
        assert stale == [], "remove the stale lines from tistis_common.ownership"
