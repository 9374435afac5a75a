-- Every escalation of a conversation, kept (conversations.escalation_reason holds only the
-- latest and a hand-back clears it): the inbox's reports count escalations by reason.
-- Writer: a trigger on conversations, so that every path that escalates (the AI responder's
-- reply statement, its escalation handler, anything later) is recorded without each of them
-- having to remember; the ingress only reads it.

CREATE TABLE conversation_escalations (
  id              bigserial PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  channel         text NOT NULL,
  reason          text,
  escalated_at    timestamptz NOT NULL
);
CREATE INDEX ON conversation_escalations (tenant_id, escalated_at);
ALTER TABLE conversation_escalations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversation_escalations FORCE ROW LEVEL SECURITY;
-- Read inside the tenant's scope; the trigger's insert copies a conversation row its writer was
-- allowed to change, so it is not checked again (a maintenance script that updates
-- conversations without a tenant scope must not fail on this history).
CREATE POLICY tenant_read ON conversation_escalations FOR SELECT
  USING (tenant_id = current_tenant());
CREATE POLICY trigger_insert ON conversation_escalations FOR INSERT WITH CHECK (true);
GRANT SELECT, INSERT ON conversation_escalations TO tistis_app;

CREATE FUNCTION record_escalation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.escalated_at IS NOT NULL
     AND (TG_OP = 'INSERT' OR NEW.escalated_at IS DISTINCT FROM OLD.escalated_at) THEN
    INSERT INTO conversation_escalations (tenant_id, conversation_id, channel, reason, escalated_at)
    VALUES (NEW.tenant_id, NEW.id, NEW.channel, NEW.escalation_reason, NEW.escalated_at);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER conversations_escalated AFTER INSERT OR UPDATE OF escalated_at ON conversations
  FOR EACH ROW EXECUTE FUNCTION record_escalation();
