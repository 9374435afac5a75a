-- Written by: the CLI (`tistis api-key issue --expires-in-days`); read by the ingress.
-- API keys may expire: the lookup refuses a key past its `expires_at` as it refuses a revoked
-- one, and the realtime stream asks it again every few seconds, so an open stream ends too.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- The resolver reads the new column (column grants, as in 0600).
GRANT SELECT (expires_at) ON api_keys TO tistis_resolver;

-- The function belongs to tistis_resolver (0600): membership only to replace it, revoked below.
GRANT tistis_resolver TO CURRENT_USER;
-- pg_temp last: a SECURITY DEFINER function must not resolve names in the caller's temporary
-- schema first (PostgreSQL docs, "Writing SECURITY DEFINER Functions Safely").
CREATE OR REPLACE FUNCTION api_key_tenant(p_hash text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT tenant_id FROM api_keys
  WHERE key_hash = p_hash AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
$$;
REVOKE tistis_resolver FROM CURRENT_USER;
