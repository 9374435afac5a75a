-- Written by: dispatcher.
-- TikTok send quota per lead (a lead is one tenant + channel + platform user): at most N
-- messages per local day (the guide) and at most M since the user last wrote (the platform).
-- One row per lead, updated with a single INSERT .. ON CONFLICT DO UPDATE .. WHERE under limit,
-- so that the row lock serialises concurrent sends and none can pass the limit.
CREATE TABLE dispatcher_send_quota (
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id       uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  day           date NOT NULL,
  day_count     int NOT NULL DEFAULT 0,
  -- conversations.last_inbound_at when the current run of unanswered messages started
  streak_since  timestamptz,
  streak_count  int NOT NULL DEFAULT 0,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, lead_id)
);

-- Which outbound message took quota (and how many platform messages it was split into), so
-- that a retried or redelivered message never counts twice.
CREATE TABLE dispatcher_quota_uses (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  message_id  uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  parts       int NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, message_id)
);

-- Stale claims (a crash between the platform call and our commit) are found with this index.
CREATE INDEX messages_outbound_sending ON messages (tenant_id, updated_at)
  WHERE direction = 'outbound' AND status = 'sending';

-- A text split into parts keeps every part's platform id in payload.part_ids (the last one is
-- platform_message_id): status webhooks for an earlier part find the message through this.
CREATE INDEX messages_part_ids ON messages USING gin ((payload -> 'part_ids'))
  WHERE direction = 'outbound';

ALTER TABLE dispatcher_send_quota ENABLE ROW LEVEL SECURITY;
ALTER TABLE dispatcher_send_quota FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dispatcher_send_quota USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());
ALTER TABLE dispatcher_quota_uses ENABLE ROW LEVEL SECURITY;
ALTER TABLE dispatcher_quota_uses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dispatcher_quota_uses USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON dispatcher_send_quota, dispatcher_quota_uses TO tistis_app;
