"""Who writes which table. Each table has one owning service; any other writer is named with why.
This supersedes the comment at the top of `0001_core.sql` (an applied migration, never edited).
`tests/architecture/test_table_ownership.py` reads the SQL of every package and fails when a
package writes a table this declaration does not let it write, or a table is not declared.

Writers are the services (`ingress`, `ai-responder`, `dispatcher`, `scorer`, `scheduler`), the
operators' CLI (`cli`) and, for the shared pieces of `libs/common` that several of them call, the
module by name (`tistis_common.media_files`, ...). Moving a second writer behind an event would
change behaviour; where it was not free it is declared here instead."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ownership:
    owner: str
    also: dict[str, str] = field(default_factory=dict)  # other writer -> why it writes

    def writers(self) -> set[str]:
        return {self.owner, *self.also}


PROVISIONING = "tenant set-up: `tistis seed-demo`, `tistis tenants ...` run it (operators)"
STAFF_UI = "staff act through the inbox and the operator API, which the ingress serves"

TABLES: dict[str, Ownership] = {
    # -- the clinic's set-up: operators write it with the CLI, which calls tistis_common.admin
    "tenants": Ownership("tistis_common.admin"),
    "branches": Ownership("tistis_common.admin"),
    "services": Ownership("tistis_common.admin"),
    "faqs": Ownership("tistis_common.admin"),
    "ai_tenant_context": Ownership("tistis_common.admin"),
    "channel_connections": Ownership("tistis_common.admin", {
        "dispatcher": "keeps the platform tokens fresh (a refreshed token is stored where it is read)",
    }),
    "schema_migrations": Ownership("tistis_common.migrate"),
    # -- patients and their conversations
    "leads": Ownership("ai-responder", {
        "scorer": "the score and band (leads.score, leads.classification) are the scorer's decision",
        "dispatcher": "a platform's 'user opted out' answer (WhatsApp 131050) opts the lead out "
                      "where the failure is learnt",
        "ingress": STAFF_UI + " (edit a patient, opt out, erase)",
    }),
    "conversations": Ownership("ai-responder", {
        "dispatcher": "a send that failed flags the conversation for a human where it fails",
        "ingress": STAFF_UI + " (take over, hand back, assign)",
    }),
    "messages": Ownership("ai-responder", {
        "dispatcher": "the send's claim, outcome and platform status of each outbound message",
        "scheduler": "its own outbound messages (confirmations, reminders, follow-ups), stored "
                     "with their outbox event in one transaction",
        "tistis_common.media_files": "erasing a patient (`tistis erase-patient`) deletes their messages",
    }),
    "quotes": Ownership("ai-responder"),
    "lead_links": Ownership("ingress"),
    "callback_requests": Ownership("ingress"),
    # -- scoring
    "lead_classifications": Ownership("scorer"),
    "lead_score_events": Ownership("scorer"),
    # -- appointments
    "appointments": Ownership("scheduler"),
    "appointment_claims": Ownership("scheduler"),
    "scheduler_offers": Ownership("scheduler"),
    "followups": Ownership("scheduler"),
    "lead_cold_marks": Ownership("scheduler"),
    # -- sending
    "dispatcher_quota_uses": Ownership("dispatcher"),
    "dispatcher_send_quota": Ownership("dispatcher"),
    "media_uploads": Ownership("dispatcher"),
    "media_fetches": Ownership("dispatcher", {
        "tistis_common.media_files": "erasing a patient forgets what was fetched for them"}),
    # shared bookkeeping of the media store: the dispatcher (fetched files), the ingress (files
    # staff send) and the scheduler (retention) keep and delete files only through it
    "media_files": Ownership("tistis_common.media_files"),
    # -- the staff's side (the inbox and the operator API, served by the ingress)
    "staff_users": Ownership("ingress", {"tistis_common.staff": "`tistis staff add` creates users"}),
    "staff_sessions": Ownership("ingress"),
    "staff_actions": Ownership("ingress"),
    "conversation_notes": Ownership("ingress"),
    "conversation_escalations": Ownership("ingress"),
    "inbox_conversations": Ownership("ingress"),
    "whatsapp_templates": Ownership("ingress"),
    "canned_replies": Ownership("ingress", {"tistis_common.admin": PROVISIONING + " (the fixture's)"}),
    "api_keys": Ownership("ingress", {"tistis_common.admin": "`tistis keys issue` / `revoke`"}),
    "rate_limits": Ownership("ingress"),
    # -- the consumer runner's idempotency: every consumer, each under its own name
    "processed_events": Ownership("tistis_common.idempotency", {
        "ai-responder": "its processed marks"}),
    "event_outbox": Ownership("tistis_common.idempotency"),
}
