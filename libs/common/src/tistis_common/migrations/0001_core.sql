-- Core schema of the messaging platform.
-- Writers (one service writes each table):
--   tenants, branches, services, faqs, channel_connections, ai_tenant_context: tistis CLI (ops)
--   leads, conversations, messages (inbound + AI replies): ai-responder
--   messages (send status), conversations.needs_attention: dispatcher
--   leads.score/classification, lead_score_events: scorer
--   appointments, followups: scheduler
--   processed_events: every consumer, for its own name
-- Tenant isolation: every tenant-owned table has row level security on `app.tenant_id`, set per
-- transaction by tistis_common.db.tenant_tx. Services connect as `tistis_app`, which is neither
-- the owner nor BYPASSRLS, so the policies always apply (FORCE covers the owner as well).

CREATE EXTENSION IF NOT EXISTS btree_gist;

DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tistis_app') THEN
    CREATE ROLE tistis_app NOLOGIN NOBYPASSRLS;
  END IF;
END $$;

CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid
$$;

CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name        text NOT NULL,
  timezone    text NOT NULL DEFAULT 'America/Mexico_City',
  settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE branches (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name          text NOT NULL,
  address       text,
  phone         text,
  timezone      text NOT NULL DEFAULT 'America/Mexico_City',
  -- {"mon": [["09:00","18:00"]], ...}; a missing weekday is closed
  opening_hours jsonb NOT NULL DEFAULT '{}'::jsonb,
  closed_days   date[] NOT NULL DEFAULT '{}',
  capacity      int NOT NULL DEFAULT 1 CHECK (capacity > 0),
  UNIQUE (tenant_id, name)
);

CREATE TABLE services (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name             text NOT NULL,
  description      text,
  price_min        numeric(12,2),
  price_max        numeric(12,2),
  currency         text NOT NULL DEFAULT 'MXN',
  duration_minutes int NOT NULL DEFAULT 60 CHECK (duration_minutes > 0),
  high_value       boolean NOT NULL DEFAULT false,
  keywords         text[] NOT NULL DEFAULT '{}',
  UNIQUE (tenant_id, name)
);

CREATE TABLE faqs (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  question   text NOT NULL,
  answer     text NOT NULL,
  keywords   text[] NOT NULL DEFAULT '{}',
  UNIQUE (tenant_id, question)
);

CREATE TABLE channel_connections (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel             text NOT NULL CHECK (channel IN ('whatsapp','instagram','facebook','tiktok')),
  -- phone_number_id (WhatsApp), Page id (Messenger), Instagram account id, TikTok business id
  platform_account_id text NOT NULL,
  access_token        text,
  verify_token        text,
  app_secret          text,     -- Meta app secret / TikTok client secret; NULL: the env's
  app_id              text,     -- Meta app id (tells our own echoes apart) / TikTok client key
  settings            jsonb NOT NULL DEFAULT '{}'::jsonb,
  enabled             boolean NOT NULL DEFAULT true,
  healthy             boolean NOT NULL DEFAULT true,
  last_error          text,
  last_error_at       timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  -- one platform account belongs to one tenant
  UNIQUE (channel, platform_account_id)
);
CREATE INDEX ON channel_connections (tenant_id, channel);

CREATE TABLE ai_tenant_context (
  tenant_id                    uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  system_prompt                text NOT NULL DEFAULT
    'Eres el asistente virtual profesional de una clínica dental. Respondes con amabilidad, '
    'claridad y precisión, y ayudas a los pacientes a agendar citas.',
  temperature                  real NOT NULL DEFAULT 0.7 CHECK (temperature BETWEEN 0 AND 1),
  max_tokens                   int NOT NULL DEFAULT 500 CHECK (max_tokens BETWEEN 1 AND 8192),
  response_style               text NOT NULL DEFAULT 'professional',
  business_hours               jsonb NOT NULL DEFAULT
    '{"timezone":"America/Mexico_City","mon":[["09:00","18:00"]],"tue":[["09:00","18:00"]],"wed":[["09:00","18:00"]],"thu":[["09:00","18:00"]],"fri":[["09:00","18:00"]]}'::jsonb,
  escalation_keywords          text[] NOT NULL DEFAULT ARRAY['urgent','complaint'],
  auto_escalate_after_messages int NOT NULL DEFAULT 5,
  ai_provider                  text NOT NULL DEFAULT 'claude' CHECK (ai_provider IN ('claude','n8n','off')),
  model                        text,
  language                     text NOT NULL DEFAULT 'es',
  updated_at                   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel             text NOT NULL,
  platform_user_id    text NOT NULL,
  name                text,
  phone               text,
  email               text,
  score               int NOT NULL DEFAULT 0,
  classification      text NOT NULL DEFAULT 'cold' CHECK (classification IN ('hot','warm','cold')),
  spam                boolean NOT NULL DEFAULT false,
  not_interested      boolean NOT NULL DEFAULT false,
  opted_out_at        timestamptz,
  interested_services text[] NOT NULL DEFAULT '{}',
  last_inbound_at     timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, channel, platform_user_id)
);
CREATE INDEX ON leads (tenant_id, classification);

CREATE TABLE lead_score_events (
  id           bigserial PRIMARY KEY,
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id      uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  event_id     uuid NOT NULL,
  message_id   uuid,
  signal       text NOT NULL,
  points       int NOT NULL,
  score_before int NOT NULL,
  score_after  int NOT NULL,
  source       text NOT NULL CHECK (source IN ('ai','rules','manual','legacy')),
  reason       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (event_id, signal)
);
CREATE INDEX ON lead_score_events (tenant_id, lead_id, created_at);

CREATE TABLE conversations (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id                uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id                  uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  channel                  text NOT NULL,
  platform_account_id      text NOT NULL,
  platform_conversation_id text,             -- TikTok conversation id
  -- active: the AI answers; escalated: waiting for a human; human: staff took it over
  status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active','escalated','human','closed')),
  escalation_reason        text,
  escalated_at             timestamptz,
  needs_attention          boolean NOT NULL DEFAULT false,
  attention_reason         text,
  -- patient messages since the conversation was last resolved (auto escalation counts these)
  unresolved_inbound       int NOT NULL DEFAULT 0,
  last_inbound_at          timestamptz,      -- opens the 24 h window
  last_outbound_at         timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, lead_id, channel)
);
CREATE INDEX ON conversations (tenant_id, status);

CREATE TABLE messages (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  conversation_id     uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  lead_id             uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  channel             text NOT NULL,
  direction           text NOT NULL CHECK (direction IN ('inbound','outbound')),
  sender_type         text NOT NULL CHECK (sender_type IN ('lead','ai','agent','system')),
  kind                text NOT NULL DEFAULT 'text',
  content             text,
  payload             jsonb NOT NULL DEFAULT '{}'::jsonb,
  platform_message_id text,
  event_id            uuid,                  -- the event that created this row
  status              text NOT NULL DEFAULT 'received' CHECK (status IN
                        ('received','pending','sending','sent','delivered','read','failed','blocked_window','skipped')),
  error_code          int,
  error_title         text,
  purpose             text,                  -- reply, holding, reminder, followup, ...
  fallback            boolean NOT NULL DEFAULT false,
  model               text,
  input_tokens        int,
  output_tokens       int,
  cache_read_tokens   int,
  latency_ms          int,
  sent_at             timestamptz,           -- platform timestamp (inbound) / send time (outbound)
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
-- the platform's message id is unique per tenant and channel: a retried webhook stores once
CREATE UNIQUE INDEX messages_platform_id ON messages (tenant_id, channel, platform_message_id)
  WHERE platform_message_id IS NOT NULL;
CREATE UNIQUE INDEX messages_event_id ON messages (tenant_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX ON messages (tenant_id, conversation_id, created_at);

CREATE TABLE appointments (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id           uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  branch_id         uuid NOT NULL REFERENCES branches(id),
  service_id        uuid REFERENCES services(id),
  conversation_id   uuid REFERENCES conversations(id),
  scheduled_at      timestamptz NOT NULL,
  ends_at           timestamptz NOT NULL,
  status            text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked','cancelled','completed','no_show')),
  reminder_sent     boolean NOT NULL DEFAULT false,
  reminder_sent_at  timestamptz,
  needs_attention   boolean NOT NULL DEFAULT false,
  attention_reason  text,
  request_event_id  uuid,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CHECK (ends_at > scheduled_at)
);
CREATE INDEX ON appointments (tenant_id, branch_id, scheduled_at);
CREATE INDEX ON appointments (scheduled_at) WHERE status = 'booked' AND NOT reminder_sent;

CREATE TABLE followups (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  lead_id     uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
  attempt     int NOT NULL,
  message_id  uuid,
  sent_at     timestamptz NOT NULL DEFAULT now(),
  answered_at timestamptz,
  UNIQUE (tenant_id, lead_id, attempt, sent_at)
);

CREATE TABLE processed_events (
  consumer     text NOT NULL,
  event_id     uuid NOT NULL,
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- Row level security on every tenant-owned table.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['branches','services','faqs','channel_connections','ai_tenant_context',
    'leads','lead_score_events','conversations','messages','appointments','followups',
    'processed_events']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                   'WITH CHECK (tenant_id = current_tenant())', t);
  END LOOP;
END $$;

-- The application role reads the tenant directory and works on tenant rows through RLS.
GRANT USAGE ON SCHEMA public TO tistis_app;
GRANT SELECT ON tenants TO tistis_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  branches, services, faqs, channel_connections, ai_tenant_context, leads, lead_score_events,
  conversations, messages, appointments, followups, processed_events TO tistis_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO tistis_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tistis_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO tistis_app;
