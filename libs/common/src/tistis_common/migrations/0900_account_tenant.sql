-- Which tenant owns this platform account (phone_number_id, Page id, Instagram account id,
-- TikTok business id): the app-level webhook route (`/api/webhook/{channel}`) receives entries
-- of many clinics in one delivery and routes each by its account id, before any tenant scope
-- exists. Same shape as 0600's lookups: owned by the NOLOGIN resolver role, read-only policy on
-- exactly the columns it needs, one account at a time, never a list, never a secret.
-- pg_temp last in the search_path, so a temporary object cannot shadow a table.
GRANT tistis_resolver TO CURRENT_USER;
GRANT SELECT (tenant_id, channel, platform_account_id, enabled) ON channel_connections
  TO tistis_resolver;
CREATE POLICY resolver_lookup ON channel_connections FOR SELECT TO tistis_resolver USING (true);

CREATE FUNCTION account_tenant(p_channel text, p_account text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT tenant_id FROM channel_connections
  WHERE channel = p_channel AND platform_account_id = p_account AND enabled
$$;
ALTER FUNCTION account_tenant(text, text) OWNER TO tistis_resolver;
REVOKE ALL ON FUNCTION account_tenant(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION account_tenant(text, text) TO tistis_app;
REVOKE tistis_resolver FROM CURRENT_USER;
