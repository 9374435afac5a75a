-- Which tenant owns this WhatsApp Business Account: the WABA-level webhook fields
-- (`message_template_status_update`) name no phone number, only the account in `entry.id`; the
-- ingress routes them to the tenant whose WhatsApp connection's settings name it
-- (`business_account_id`, as the template sync reads it). Same shape as 0900's account_tenant:
-- the resolver role, one account at a time, never a list or a secret. An account that two
-- tenants both name routes to neither.
GRANT tistis_resolver TO CURRENT_USER;
GRANT SELECT (settings) ON channel_connections TO tistis_resolver;

CREATE FUNCTION business_account_tenant(p_business_account text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT (array_agg(DISTINCT tenant_id))[1] FROM channel_connections
  WHERE channel = 'whatsapp' AND enabled AND settings->>'business_account_id' = p_business_account
  HAVING count(DISTINCT tenant_id) = 1
$$;
ALTER FUNCTION business_account_tenant(text) OWNER TO tistis_resolver;
REVOKE ALL ON FUNCTION business_account_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION business_account_tenant(text) TO tistis_app;
REVOKE tistis_resolver FROM CURRENT_USER;
