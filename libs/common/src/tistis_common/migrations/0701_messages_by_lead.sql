-- A lead's messages in order. The ai-responder asks, for every patient message, whether it is
-- the lead's first (to announce the lead), and the dispatcher reads a lead's recent texts for
-- opt-outs; without this index both scanned every message of the tenant, a cost that grew with
-- the tenant's history.
CREATE INDEX messages_by_lead ON messages (tenant_id, lead_id, created_at);
