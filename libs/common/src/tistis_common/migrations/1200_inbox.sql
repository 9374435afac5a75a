-- The clinic's inbox: staff accounts, their sessions and personal API keys, the inbox's own state
-- of each conversation (assignee, seen, closed, labels), private notes, canned replies, the
-- WhatsApp templates of a tenant, an audit trail of staff actions, and rate-limit counters.
-- Writer: the ingress (the inbox API), and the tistis CLI for the first admin of a tenant.
-- `conversations.status` stays the AI responder's: taking over and handing back are events.

CREATE TABLE staff_users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  email         text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
  name          text NOT NULL,
  role          text NOT NULL CHECK (role IN ('admin', 'agent')),
  password_hash text NOT NULL,           -- argon2id, PHC string
  language      text NOT NULL DEFAULT 'es' CHECK (language IN ('es', 'en')),
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, email)
);

-- A browser session: a random token in an HttpOnly cookie, only its sha256 stored.
CREATE TABLE staff_sessions (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id      uuid NOT NULL REFERENCES staff_users(id) ON DELETE CASCADE,
  token_hash   text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz
);
CREATE INDEX ON staff_sessions (tenant_id, user_id);

-- Personal keys: an API key may belong to a staff user (tenant keys from the CLI have none).
ALTER TABLE api_keys ADD COLUMN user_id uuid REFERENCES staff_users(id) ON DELETE CASCADE;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

CREATE TABLE inbox_conversations (
  conversation_id uuid PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  assigned_to     uuid REFERENCES staff_users(id) ON DELETE SET NULL,
  assigned_at     timestamptz,
  seen_at         timestamptz,           -- the team last read it: later patient messages are unread
  closed_at       timestamptz,           -- closed until the patient writes again
  labels          text[] NOT NULL DEFAULT '{}',
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON inbox_conversations (tenant_id, assigned_to);

CREATE TABLE conversation_notes (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  author_id       uuid REFERENCES staff_users(id) ON DELETE SET NULL,
  body            text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON conversation_notes (tenant_id, conversation_id, created_at);

CREATE TABLE canned_replies (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  shortcut   text NOT NULL CHECK (shortcut ~ '^[a-z0-9_-]{1,40}$'),
  body       text NOT NULL,
  UNIQUE (tenant_id, shortcut)
);

-- The tenant's WhatsApp message templates as the Business Management API reports them
-- (GET /{waba-id}/message_templates) and its message_template_status_update webhooks keep them.
CREATE TABLE whatsapp_templates (
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  template_id  text NOT NULL,
  name         text NOT NULL,
  language     text NOT NULL,
  category     text,
  status       text NOT NULL,            -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...
  body         text,                     -- the BODY component's text, with {{1}} placeholders
  params       int NOT NULL DEFAULT 0,   -- how many {{n}} the body holds
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, template_id),
  UNIQUE (tenant_id, name, language)
);

-- Who did what (every staff action through the inbox API).
CREATE TABLE staff_actions (
  id          bigserial PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id     uuid REFERENCES staff_users(id) ON DELETE SET NULL,
  api_key_id  uuid REFERENCES api_keys(id) ON DELETE SET NULL,
  action      text NOT NULL,
  object_id   uuid,
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON staff_actions (tenant_id, object_id, created_at);
CREATE INDEX ON staff_actions (tenant_id, action, created_at);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['staff_users','staff_sessions','inbox_conversations','conversation_notes',
    'canned_replies','whatsapp_templates','staff_actions']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                   'WITH CHECK (tenant_id = current_tenant())', t);
  END LOOP;
END $$;

-- Fixed-window counters shared by every ingress replica (per API key, per login attempt).
-- Buckets name no tenant data (a key id, a hash of tenant+email, a client address).
CREATE TABLE rate_limits (
  bucket       text NOT NULL,
  window_start timestamptz NOT NULL,
  hits         int NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket, window_start)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO tistis_app;

-- Credentials resolved before a tenant scope exists, like api_key_tenant (0600): one row per
-- hash, nothing listed.
GRANT tistis_resolver TO CURRENT_USER;
GRANT SELECT (id, tenant_id, key_hash, revoked_at, user_id) ON api_keys TO tistis_resolver;
GRANT SELECT (id, tenant_id, user_id, token_hash, expires_at, revoked_at) ON staff_sessions
  TO tistis_resolver;
GRANT SELECT (id, tenant_id, role, disabled_at) ON staff_users TO tistis_resolver;
CREATE POLICY resolver_lookup ON staff_sessions FOR SELECT TO tistis_resolver USING (true);
CREATE POLICY resolver_lookup ON staff_users FOR SELECT TO tistis_resolver USING (true);

-- (key id, tenant, user, role) of a live key: whatever api_key_tenant accepts (not revoked;
-- later migrations add expiry there), and a personal key of a disabled user is dead.
-- pg_temp last: a SECURITY DEFINER function must not resolve names in the caller's temporary
-- schema first (PostgreSQL docs, "Writing SECURITY DEFINER Functions Safely").
CREATE FUNCTION api_key_principal(p_hash text)
  RETURNS TABLE (key_id uuid, tenant_id uuid, user_id uuid, role text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT k.id, k.tenant_id, k.user_id, COALESCE(u.role, 'admin')
  FROM api_keys k LEFT JOIN staff_users u ON u.id = k.user_id
  WHERE k.key_hash = p_hash AND k.tenant_id = api_key_tenant(p_hash)
    AND (k.user_id IS NULL OR u.disabled_at IS NULL)
$$;
CREATE FUNCTION staff_session_principal(p_hash text)
  RETURNS TABLE (session_id uuid, tenant_id uuid, user_id uuid, role text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT s.id, s.tenant_id, s.user_id, u.role
  FROM staff_sessions s JOIN staff_users u ON u.id = s.user_id
  WHERE s.token_hash = p_hash AND s.revoked_at IS NULL AND s.expires_at > now()
    AND u.disabled_at IS NULL
$$;
ALTER FUNCTION api_key_principal(text) OWNER TO tistis_resolver;
ALTER FUNCTION staff_session_principal(text) OWNER TO tistis_resolver;
REVOKE ALL ON FUNCTION api_key_principal(text), staff_session_principal(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_principal(text), staff_session_principal(text) TO tistis_app;
REVOKE tistis_resolver FROM CURRENT_USER;
