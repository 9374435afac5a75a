"""The evaluation set: short conversations with the tool calls and facts a good reply has.

    python -m tistis_ai_responder.evaluation [--cases FILE] [--clinic FIXTURE] [--base-url URL]

Each case is asked of the model exactly as the responder asks it (the clinic's cached context,
the per-request "now", the tools, tool_choice "any"); the calls are checked by `tools.decide`
and rendered as the patient would read them, then compared with the case's expectations. With
`ANTHROPIC_API_KEY` it runs against the real API (`make eval`) and prints the pass rate per case
type; without a key it says so and exits 0. `make test` runs the same cases against the
sandbox's demo brain, where all must pass: that checks the plumbing, not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tistis_common.admin import read_fixture

from . import tools
from .context import TenantContext
from .model import BadModelOutput, CircuitBreaker, ClaudeResponder
from .phrases import detect
from .service import ReplyPlan, reply_from_decision, situation_text

ROOT = Path(__file__).resolve().parents[4]
CASES = ROOT / "services" / "ai-responder" / "evals" / "cases.yaml"
CLINIC = ROOT / "fixtures" / "esva-dental.yaml"


def clinic_context(doc: Mapping[str, Any], model: str) -> TenantContext:
    """The fixture's clinic as the responder would read it from the database (ids derived)."""
    tenant = doc["tenant"]

    def uid(kind: str, name: str) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant['slug']}:{kind}:{name}")

    def price(value: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    catalog = {
        "services": [{"id": uid("service", s["name"]), "name": s["name"],
                      "description": s.get("description"), "price_min": price(s.get("price_min")),
                      "price_max": price(s.get("price_max")), "currency": s.get("currency", "MXN"),
                      "duration_minutes": s.get("duration_minutes", 30),
                      "keywords": s.get("keywords") or []}
                     for s in sorted(doc.get("services") or [], key=lambda s: s["name"])],
        "branches": [{"id": uid("branch", b["name"]), "name": b["name"],
                      "address": b.get("address"), "phone": b.get("phone"),
                      "opening_hours": b.get("opening_hours") or {}}
                     for b in sorted(doc.get("branches") or [], key=lambda b: b["name"])],
        "faqs": sorted(({"question": f["question"], "answer": f["answer"],
                         "keywords": f.get("keywords") or []} for f in doc.get("faqs") or []),
                       key=lambda f: f["question"]),
    }
    row = {"tenant_name": tenant["name"], "timezone": tenant.get("timezone", "UTC"),
           **(doc.get("ai_context") or {})}
    return TenantContext.from_rows(uuid.uuid5(uuid.NAMESPACE_URL, tenant["slug"]), row,
                                   catalog, model)


@dataclass
class Result:
    case: Mapping[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _history(case: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for turn in case.get("history") or []:
        clinic = turn.get("clinic") is not None
        rows.append({"direction": "outbound" if clinic else "inbound",
                     "sender_type": "ai" if clinic else "lead", "kind": "text",
                     "content": turn.get("clinic") or turn.get("patient")})
    for text in case["messages"]:
        rows.append({"direction": "inbound", "sender_type": "lead", "kind": "text", "content": text})
    return rows


def check(case: Mapping[str, Any], decision: tools.Decision, text: str) -> list[str]:
    """What the case expects and the reply does not show (empty: passed)."""
    want = case.get("expect") or {}
    called = set(decision.calls)
    fails: list[str] = []
    for name in want.get("tools") or []:
        if name not in called:
            fails.append(f"no {name} call (called {sorted(called)})")
    if want.get("tools_any") and not called & set(want["tools_any"]):
        fails.append(f"none of {want['tools_any']} called (called {sorted(called)})")
    for name in want.get("not_tools") or []:
        if name in called:
            fails.append(f"unexpected {name} call")
    if "quote" in want and sorted(s.name for s in decision.quote) != sorted(want["quote"]):
        fails.append(f"quoted {[s.name for s in decision.quote]}, expected {want['quote']}")
    interests = {s.name for s in decision.interests}
    for name in want.get("interests") or []:
        if name not in interests:
            fails.append(f"interest {name!r} not recorded ({sorted(interests)})")
    booking = decision.bookings[0] if decision.bookings else None
    if "action" in want and (booking is None or booking.action != want["action"]):
        fails.append(f"no {want['action']} request (got {booking and booking.action})")
    if "service" in want and (booking is None or booking.service is None
                              or booking.service.name != want["service"]):
        fails.append(f"booking service {booking and booking.service and booking.service.name!r}, "
                     f"expected {want['service']!r}")
    if "branch" in want and (booking is None or booking.branch is None
                             or booking.branch.name != want["branch"]):
        fails.append(f"booking branch {booking and booking.branch and booking.branch.name!r}, "
                     f"expected {want['branch']!r}")
    given = [d.replace(" ", "T") for b in decision.bookings for d in b.preferred_dates]
    for wanted in want.get("dates") or []:
        if not any(d.startswith(wanted) for d in given):
            fails.append(f"date {wanted} not asked for (got {given})")
    for signal in want.get("signals") or []:
        if signal not in {s.value for s in decision.signals}:
            fails.append(f"signal {signal} missing ({[s.value for s in decision.signals]})")
    if "escalate" in want and (decision.escalation is not None) != want["escalate"]:
        fails.append(f"escalation {decision.escalation!r}, expected {want['escalate']}")
    lowered = text.casefold()
    for fact in want.get("text_all") or []:
        if fact.casefold() not in lowered:
            fails.append(f"reply lacks {fact!r}")
    if want.get("text_any") and not any(f.casefold() in lowered for f in want["text_any"]):
        fails.append(f"reply has none of {want['text_any']}")
    return fails


async def run_case(responder: ClaudeResponder, clinic: TenantContext, case: Mapping[str, Any],
                   now: datetime) -> Result:
    history = _history(case)
    texts = list(case["messages"])
    choice = tools.find_service(clinic, case["choice"]) if case.get("choice") else None
    situation = situation_text(clinic, now, None, choice)
    result = Result(case)
    try:
        reply = await responder.reply(clinic, history, situation)
        decision = tools.decide(clinic, reply.calls)
        patient = SimpleNamespace(lead_name="María García")  # all a reply reads of its conversation
        plan = ReplyPlan(patient, clinic, texts, situation, None,  # type: ignore[arg-type]
                         lang=detect(texts, clinic.language), now=now, choice=choice)
        text = reply_from_decision(plan, decision, reply).text
    except (BadModelOutput, tools.InvalidToolCall) as exc:
        result.failures.append(f"{type(exc).__name__}: {exc}")
        return result
    result.failures = check(case, decision, text)
    return result


async def run_all(responder: ClaudeResponder, clinic: TenantContext, cases: Sequence[Mapping[str, Any]],
                  now: datetime, concurrency: int = 4) -> list[Result]:
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Mapping[str, Any]) -> Result:
        async with gate:
            return await run_case(responder, clinic, case, now)

    return list(await asyncio.gather(*(one(c) for c in cases)))


def load(path: Path = CASES) -> tuple[datetime, list[dict[str, Any]]]:
    doc = read_fixture(path)
    return datetime.fromisoformat(str(doc["now"])), list(doc["cases"])


def report(results: Sequence[Result]) -> str:
    by_type: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_type[r.case["type"]].append(r)
    lines = [f"{'type':<14} {'passed':>8}  rate"]
    for kind, group in sorted(by_type.items()):
        ok = sum(r.passed for r in group)
        lines.append(f"{kind:<14} {ok:>3}/{len(group):<4} {ok / len(group):6.0%}")
    ok = sum(r.passed for r in results)
    lines.append(f"{'all':<14} {ok:>3}/{len(results):<4} {ok / max(len(results), 1):6.0%}")
    for r in results:
        if not r.passed:
            lines.append(f"FAIL {r.case['id']}: " + "; ".join(r.failures))
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        print("make eval: ANTHROPIC_API_KEY is not set; nothing was sent to the model "
              "(the same cases run against the sandbox's demo brain in `make test`).")
        return 0
    model = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")
    now, cases = load(Path(args.cases))
    clinic = clinic_context(read_fixture(Path(args.clinic)), model)
    responder = ClaudeResponder(key, args.base_url or os.environ.get("ANTHROPIC_BASE_URL"),
                                timeout=60, max_retries=3, breaker=CircuitBreaker(10**6, 1))
    try:
        results = await run_all(responder, clinic, cases, now)
    finally:
        await responder.close()
    print(f"model {model}, {len(cases)} cases, now {now.isoformat()}")
    print(report(results))
    return 1 if args.strict and not all(r.passed for r in results) else 0


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tistis-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=str(CASES))
    parser.add_argument("--clinic", default=str(CLINIC))
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a case fails")
    sys.exit(asyncio.run(_main(parser.parse_args(argv))))


if __name__ == "__main__":
    cli()
