-- The same patient on several channels, merged into one lead by hand (the inbox); leads whose
-- phone numbers match are shown as one without a row here. A link points a lead at the lead
-- that stands for the person. Writer: the ingress (the inbox API).

CREATE TABLE lead_links (
  lead_id         uuid PRIMARY KEY REFERENCES leads(id) ON DELETE CASCADE,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  primary_lead_id uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  linked_by       uuid REFERENCES staff_users(id) ON DELETE SET NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (lead_id <> primary_lead_id)
);
CREATE INDEX ON lead_links (tenant_id, primary_lead_id);
ALTER TABLE lead_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lead_links USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());

-- Phone numbers compared by their last ten digits (+52 1 55..., 52155..., 55...).
CREATE INDEX leads_phone_digits ON leads (tenant_id, (right(regexp_replace(phone, '\D', '', 'g'), 10)))
  WHERE phone IS NOT NULL;
