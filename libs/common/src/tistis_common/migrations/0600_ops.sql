-- Operations: tenant API keys for the operator API and the realtime feed.
-- Writer: tistis CLI (ops) issues and revokes keys; the ingress only resolves them.
-- Keys are random 256-bit tokens shown once; only their sha256 is stored (a slow hash adds
-- nothing for high-entropy secrets, and lookups by hash stay one index probe).

CREATE TABLE api_keys (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name         text NOT NULL,
  key_hash     text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
  prefix       text NOT NULL,            -- first characters of the key, to recognise it in lists
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
CREATE INDEX ON api_keys (tenant_id);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys USING (tenant_id = current_tenant())
  WITH CHECK (tenant_id = current_tenant());

-- Lookups before a tenant scope exists: which tenant holds this live key hash (the operator
-- API), which tenant owns this conversation / lead id (the legacy callback names ids without
-- their tenant, as the product guide's body does). RLS stays FORCEd for everyone; a NOLOGIN
-- role gets a read-only policy on exactly these tables and owns three SECURITY DEFINER
-- functions that answer one id at a time and never list anything.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tistis_resolver') THEN
    CREATE ROLE tistis_resolver NOLOGIN NOBYPASSRLS;
  END IF;
END $$;
-- Membership only to hand the functions over (revoked at the end): policies apply to a role's
-- members too, and the schema owner must stay under RLS like everyone else.
GRANT tistis_resolver TO CURRENT_USER;
GRANT USAGE, CREATE ON SCHEMA public TO tistis_resolver;
GRANT SELECT (id, tenant_id, key_hash, revoked_at) ON api_keys TO tistis_resolver;
GRANT SELECT (id, tenant_id) ON conversations, leads TO tistis_resolver;
CREATE POLICY resolver_lookup ON api_keys FOR SELECT TO tistis_resolver USING (true);
CREATE POLICY resolver_lookup ON conversations FOR SELECT TO tistis_resolver USING (true);
CREATE POLICY resolver_lookup ON leads FOR SELECT TO tistis_resolver USING (true);

CREATE FUNCTION api_key_tenant(p_hash text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT tenant_id FROM api_keys WHERE key_hash = p_hash AND revoked_at IS NULL
$$;
CREATE FUNCTION conversation_tenant(p_id uuid) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT tenant_id FROM conversations WHERE id = p_id
$$;
CREATE FUNCTION lead_tenant(p_id uuid) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT tenant_id FROM leads WHERE id = p_id
$$;
ALTER FUNCTION api_key_tenant(text) OWNER TO tistis_resolver;
ALTER FUNCTION conversation_tenant(uuid) OWNER TO tistis_resolver;
ALTER FUNCTION lead_tenant(uuid) OWNER TO tistis_resolver;
REVOKE ALL ON FUNCTION api_key_tenant(text), conversation_tenant(uuid), lead_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_tenant(text), conversation_tenant(uuid), lead_tenant(uuid)
  TO tistis_app;
REVOKE tistis_resolver FROM CURRENT_USER;
