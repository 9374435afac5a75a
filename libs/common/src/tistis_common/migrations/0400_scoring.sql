-- Lead scoring. Writer: scorer (leads.score / classification / spam / not_interested,
-- lead_score_events, lead_classifications).
--
-- Score events may now also come from the scheduler's follow-ups (LeadScoreSet source
-- "followup"). `points` is what the score actually moved (after clamping to the range), so the
-- history always adds up: start + sum(points) = score. `rule_points` is what the rule asked for
-- (a spam -50 on a lead at 20 moves it by -20).
ALTER TABLE lead_score_events DROP CONSTRAINT lead_score_events_source_check;
ALTER TABLE lead_score_events ADD CONSTRAINT lead_score_events_source_check
  CHECK (source IN ('ai','rules','manual','legacy','followup'));
ALTER TABLE lead_score_events ADD COLUMN rule_points int;

-- One row per band change (or spam flag) the scorer announced with LeadClassified, keyed by the
-- score event that caused it: a redelivered event publishes the very same LeadClassified again.
CREATE TABLE lead_classifications (
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  event_id       uuid NOT NULL,
  lead_id        uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  previous       text NOT NULL CHECK (previous IN ('hot','warm','cold')),
  classification text NOT NULL CHECK (classification IN ('hot','warm','cold')),
  score          int NOT NULL,
  spam           boolean NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX ON lead_classifications (tenant_id, lead_id, created_at);

ALTER TABLE lead_classifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_classifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lead_classifications USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON lead_classifications TO tistis_app;
