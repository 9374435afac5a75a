-- SECURITY DEFINER functions resolve names with pg_temp last. Without `pg_temp` in the
-- function's search_path, PostgreSQL searches the caller's temporary schema FIRST, so a role
-- that may create temporary tables could shadow `api_keys` or `leads` inside a function that
-- runs with its owner's rights (PostgreSQL docs, CREATE FUNCTION, "Writing SECURITY DEFINER
-- Functions Safely"). Every such function of the schema, whoever wrote it (0600, 0700, later
-- ones): the security suite checks that none is left without it.
GRANT tistis_resolver TO CURRENT_USER;  -- owner of the 0600 lookups; revoked below
DO $$
DECLARE f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
      AND pg_has_role(p.proowner, 'USAGE')
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = public, pg_temp', f);
  END LOOP;
END $$;
REVOKE tistis_resolver FROM CURRENT_USER;
