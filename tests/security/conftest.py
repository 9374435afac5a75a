"""Counts every attack the security suite tries, and prints the tally at the end of the run."""

from collections import Counter

import pytest

TRIED: Counter[str] = Counter()
GOT_THROUGH: Counter[str] = Counter()


@pytest.fixture
def attack():
    def record(category: str, got_through: bool) -> None:
        TRIED[category] += 1
        if got_through:
            GOT_THROUGH[category] += 1

    return record


def pytest_terminal_summary(terminalreporter):
    if not TRIED:
        return
    terminalreporter.section("security: attacks tried")
    for category, n in sorted(TRIED.items()):
        terminalreporter.write_line(f"{category:<40} tried {n:>5}   got through {GOT_THROUGH[category]}")
    terminalreporter.write_line(f"{'total':<40} tried {sum(TRIED.values()):>5}   "
                                f"got through {sum(GOT_THROUGH.values())}")
