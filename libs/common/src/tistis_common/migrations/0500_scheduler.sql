-- Scheduler (written by: scheduler). Capacity claims, the scheduler's outbox, slot offers and
-- the follow-up COLD marks.
--
-- Capacity is a database invariant, not a Python promise: an appointment claims every 15-minute
-- cell it covers, one row per cell with a chair number; (branch, cell, chair) is unique and the
-- chair number cannot exceed the branch's capacity (trigger), so at most `capacity`
-- appointments overlap any moment whatever the writers do. Writers take an advisory lock per
-- branch and local day first, so that racing bookings queue instead of failing on the key.

ALTER TABLE appointments ADD COLUMN booked_at timestamptz;  -- booked or last rescheduled (scheduler clock)

CREATE TABLE appointment_claims (
  tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  branch_id      uuid NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
  slot_start     timestamptz NOT NULL,
  chair_no       int NOT NULL CHECK (chair_no >= 1),
  appointment_id uuid NOT NULL REFERENCES appointments(id) ON DELETE CASCADE,
  PRIMARY KEY (branch_id, slot_start, chair_no),
  CHECK (extract(epoch FROM slot_start)::bigint % 900 = 0)
);
CREATE INDEX ON appointment_claims (appointment_id);

CREATE FUNCTION appointment_claim_within_capacity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE cap int;
BEGIN
  SELECT capacity INTO cap FROM branches WHERE id = NEW.branch_id AND tenant_id = NEW.tenant_id;
  IF cap IS NULL OR NEW.chair_no > cap THEN
    RAISE EXCEPTION 'chair % exceeds the capacity of branch %', NEW.chair_no, NEW.branch_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER appointment_claims_capacity BEFORE INSERT OR UPDATE ON appointment_claims
  FOR EACH ROW EXECUTE FUNCTION appointment_claim_within_capacity();

-- Events decided in a transaction, kept with it: a consumer's redelivery returns them again;
-- a pass (reminders, follow-ups) publishes them after commit and marks them, and a later pass
-- republishes what a crash left unmarked (downstream drops the duplicates by id).
CREATE TABLE scheduler_outbox (
  event_id        uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  source_event_id uuid,            -- the consumed event that decided it (NULL: a pass)
  body            jsonb NOT NULL,
  created_at      timestamptz NOT NULL,
  published_at    timestamptz
);
CREATE INDEX ON scheduler_outbox (tenant_id, source_event_id);
CREATE INDEX ON scheduler_outbox (tenant_id, created_at) WHERE published_at IS NULL;

-- Free slots offered to a patient; a chosen row books (or reschedules) through the latest offer.
CREATE TABLE scheduler_offers (
  id               uuid PRIMARY KEY,
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id          uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  action           text NOT NULL CHECK (action IN ('book','reschedule')),
  appointment_id   uuid REFERENCES appointments(id) ON DELETE CASCADE,
  request_event_id uuid NOT NULL,
  created_at       timestamptz NOT NULL,
  consumed_at      timestamptz
);
CREATE INDEX ON scheduler_offers (tenant_id, lead_id, created_at);

-- A lead marked COLD after unanswered follow-ups, once per silence (since its last inbound).
CREATE TABLE lead_cold_marks (
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id       uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  since_inbound timestamptz,  -- the lead's last inbound time then; NULL if it never wrote
  event_id      uuid NOT NULL,
  marked_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX lead_cold_marks_once
  ON lead_cold_marks (tenant_id, lead_id, COALESCE(since_inbound, '-infinity'::timestamptz));

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['appointment_claims','scheduler_outbox','scheduler_offers','lead_cold_marks']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                   'WITH CHECK (tenant_id = current_tenant())', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON
  appointment_claims, scheduler_outbox, scheduler_offers, lead_cold_marks TO tistis_app;
