-- Tokens that expire: TikTok access tokens (about a day, renewed with a refresh token that
-- TikTok may rotate on every refresh) and Instagram-Login tokens (60 days, renewed with
-- themselves). Written by the tistis CLI (ops) when a clinic connects, and by the dispatcher,
-- which refreshes them before `token_expires_at` (tistis_dispatcher.tokens).
-- `token_refresh_started_at`: one refresh at a time per connection, across dispatcher
-- processes, without a transaction held over the platform call (a stale claim is taken over).
-- `token_refresh_error`: the platform refused the last refresh; unlike `healthy` (which a send
-- that still works heals), only a successful refresh or a rotation clears it, and
-- `tistis doctor` fails while it is set.
ALTER TABLE channel_connections
  ADD COLUMN refresh_token text,
  ADD COLUMN token_expires_at timestamptz,
  ADD COLUMN token_refresh_started_at timestamptz,
  ADD COLUMN token_refresh_error text;

-- The dispatcher's periodic scan runs before any tenant scope exists: ids of the connections
-- whose token expires within the channel's margin, never a secret (same shape as 0900). A
-- refused refresh is not tried again every round (a send refused by the platform still tries).
GRANT tistis_resolver TO CURRENT_USER;
GRANT SELECT (id, token_expires_at, token_refresh_error) ON channel_connections
  TO tistis_resolver;

CREATE FUNCTION tokens_expiring(p_tiktok interval, p_instagram interval)
  RETURNS TABLE (tenant_id uuid, connection_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT cc.tenant_id, cc.id FROM channel_connections cc
  WHERE cc.enabled AND cc.token_expires_at IS NOT NULL AND cc.token_refresh_error IS NULL
    AND ((cc.channel = 'tiktok' AND cc.token_expires_at < now() + p_tiktok)
      OR (cc.channel = 'instagram' AND cc.token_expires_at < now() + p_instagram))
  ORDER BY cc.token_expires_at
$$;
ALTER FUNCTION tokens_expiring(interval, interval) OWNER TO tistis_resolver;
REVOKE ALL ON FUNCTION tokens_expiring(interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokens_expiring(interval, interval) TO tistis_app;
REVOKE tistis_resolver FROM CURRENT_USER;
