-- One outbox for every consumer (tistis_common.idempotency): the scheduler's outbox of 0500,
-- renamed and keyed by consumer. A delivery keeps the events it decided in its own transaction
-- (published by the runner: published_at set at once), so a redelivery re-emits exactly those;
-- a consumer's own pass (the scheduler's reminders and follow-ups: source_event_id NULL)
-- publishes after its commit, and republishes what a crash left with published_at NULL.
-- `position` keeps the order in which one delivery decided its events.
ALTER TABLE scheduler_outbox RENAME TO event_outbox;
ALTER INDEX scheduler_outbox_pkey RENAME TO event_outbox_pkey;
ALTER TABLE event_outbox RENAME CONSTRAINT scheduler_outbox_tenant_id_fkey TO event_outbox_tenant_id_fkey;
ALTER TABLE event_outbox ADD COLUMN consumer text;
ALTER TABLE event_outbox ADD COLUMN position int NOT NULL DEFAULT 0;

-- Rows kept before this migration: a consumer's rows name it by their processed mark (the
-- scheduler's two queues), the others are the scheduler's passes. The migrating role owns the
-- tables; FORCE is lifted for the backfill only (no tenant scope here), then restored.
ALTER TABLE event_outbox NO FORCE ROW LEVEL SECURITY;
ALTER TABLE processed_events NO FORCE ROW LEVEL SECURITY;
UPDATE event_outbox o SET consumer = COALESCE(
  (SELECT p.consumer FROM processed_events p
   WHERE p.event_id = o.source_event_id AND p.tenant_id = o.tenant_id
     AND p.consumer IN ('scheduler.requests', 'scheduler.choices')
   ORDER BY p.consumer LIMIT 1),
  'scheduler');
ALTER TABLE event_outbox FORCE ROW LEVEL SECURITY;
ALTER TABLE processed_events FORCE ROW LEVEL SECURITY;

ALTER TABLE event_outbox ALTER COLUMN consumer SET NOT NULL;
DROP INDEX scheduler_outbox_tenant_id_source_event_id_idx;
DROP INDEX scheduler_outbox_tenant_id_created_at_idx;
CREATE INDEX event_outbox_by_source ON event_outbox (tenant_id, consumer, source_event_id);
CREATE INDEX event_outbox_unpublished ON event_outbox (tenant_id, consumer, created_at)
  WHERE published_at IS NULL;
