"""The chaos suite's summary: one row per scenario and seed, printed after the run (pass or
fail), so that a run of `make test-chaos` is its own report (docs/reliability.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

ROWS = pytest.StashKey[list["Row"]]()


@dataclass(frozen=True)
class Row:
    scenario: str
    seed: int
    accepted: int
    stored_once: int
    replied_once: int
    unknown: int  # parked as send_outcome_unknown (the dispatcher's crash window)
    dead_letters: int
    seconds: float  # load plus settling
    passed: bool


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


@pytest.fixture
def chaos_rows(request: pytest.FixtureRequest) -> list[Row]:
    return request.config.stash[ROWS]


def table(rows: list[Row]) -> list[str]:
    head = ("scenario", "seed", "accepted", "stored once", "replied once", "unknown",
            "dead letters", "seconds", "result")
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.seed} | {r.accepted:,} | {r.stored_once:,} | "
                     f"{r.replied_once:,} | {r.unknown} | {r.dead_letters} | {r.seconds:.0f} | "
                     f"{'pass' if r.passed else 'FAIL'} |")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    terminalreporter.section("chaos: scenario x seed")
    for line in table(rows):
        terminalreporter.write_line(line)
