-- A version number per tenant that moves whenever anything the AI is told about the clinic
-- changes: its name or time zone, its AI settings, services, branches or FAQs.
-- Reader: the ai-responder keeps each tenant's context in memory and reads only this number
-- with every reply (one column of a query it runs anyway), so an edit counts from the next
-- message on, without re-reading five tables per message.
-- Writers: the triggers below; nobody sets it by hand.

ALTER TABLE tenants ADD COLUMN context_version bigint NOT NULL DEFAULT 0;

-- SECURITY DEFINER: the application role may edit a tenant's catalog but has no UPDATE on
-- tenants; the bump runs as the owner and touches this one column only.
CREATE FUNCTION bump_context_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  UPDATE tenants SET context_version = context_version + 1
  WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
  IF TG_OP = 'UPDATE' AND OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
    UPDATE tenants SET context_version = context_version + 1 WHERE id = OLD.tenant_id;
  END IF;
  RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['ai_tenant_context', 'services', 'branches', 'faqs'] LOOP
    EXECUTE format('CREATE TRIGGER context_version AFTER INSERT OR UPDATE OR DELETE ON %I '
                   'FOR EACH ROW EXECUTE FUNCTION bump_context_version()', t);
  END LOOP;
END $$;

CREATE FUNCTION bump_own_context_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.name, NEW.timezone) IS DISTINCT FROM (OLD.name, OLD.timezone) THEN
    NEW.context_version := OLD.context_version + 1;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER context_version BEFORE UPDATE OF name, timezone ON tenants
  FOR EACH ROW EXECUTE FUNCTION bump_own_context_version();
