-- The assistant's tools (issue 18).
--
-- quotes (written by: ai-responder): every quote the assistant sent, with the catalog prices it
-- quoted at that moment (the catalog may change later; the quote does not).
-- ai_tenant_context.opt_out_words / opt_in_words: the tenant's own words (NULL: the defaults,
-- STOP/BAJA and START/ALTA); a patient message that is only one of them changes the opt-out.
-- appointments.confirmed_at (written by: scheduler): the patient confirmed (reminder button).

CREATE TABLE quotes (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id         uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  message_id      uuid NOT NULL,  -- the outbound message that carried it
  items           jsonb NOT NULL,  -- [{service_id, name, price_min, price_max}]
  total_min       numeric(12,2),
  total_max       numeric(12,2),
  currency        text NOT NULL,
  quoted_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON quotes (lead_id, quoted_at);

ALTER TABLE quotes ENABLE ROW LEVEL SECURITY;
ALTER TABLE quotes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON quotes USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON quotes TO tistis_app;

ALTER TABLE ai_tenant_context ADD COLUMN opt_out_words text[];
ALTER TABLE ai_tenant_context ADD COLUMN opt_in_words text[];

ALTER TABLE appointments ADD COLUMN confirmed_at timestamptz;
