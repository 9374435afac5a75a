-- Legacy callback (written by: ingress). The event id of a callback sent without an
-- Idempotency-Key: derived from the tenant and the action's content, so that n8n's retry of the
-- same ai_response publishes the same event (the consumers drop it) instead of a second reply.
-- `first_seen_at` bounds that: the same action sent again after the window (the setting
-- CALLBACK_DEDUP_WINDOW_HOURS) is a new event, as the same text sent on purpose a day later is.
CREATE TABLE callback_requests (
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  content_hash  text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
  event_id      uuid NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, content_hash)
);
CREATE INDEX ON callback_requests (tenant_id, first_seen_at);

ALTER TABLE callback_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE callback_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON callback_requests USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON callback_requests TO tistis_app;
