-- Patient files (photos, voice notes, documents) and what the platforms know them by.
-- Written by:
--   media_files: dispatcher (files fetched from the platforms), ingress operator API (files staff
--                upload to send), scheduler (retention deletes), tistis CLI (erasure on request)
--   media_fetches, media_uploads: dispatcher (retention and erasure delete with their file)
-- The bytes live in the media store (tistis_common.storage) under `storage_key`
-- (t/<tenant>/<sha256>): one file per tenant and content, however often it is sent.

CREATE TABLE media_files (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  storage_key   text NOT NULL,
  mime_type     text NOT NULL,
  size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
  filename      text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- the last time a message carried it: retention counts from here
  last_used_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, sha256)
);
CREATE INDEX ON media_files (tenant_id, last_used_at);

-- One row per patient message with a file: a redelivered message finds its file here and is
-- not fetched again; a failure keeps its reason.
CREATE TABLE media_fetches (
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel             text NOT NULL,
  platform_message_id text NOT NULL,
  platform_user_id    text NOT NULL,
  media_file_id       uuid REFERENCES media_files(id) ON DELETE SET NULL,
  status              text NOT NULL CHECK (status IN ('stored', 'failed')),
  error               text,
  transcript          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, channel, platform_message_id)
);
CREATE INDEX ON media_fetches (tenant_id, channel, platform_user_id);

-- A file uploaded to a platform account once (WhatsApp media upload, Messenger/Instagram
-- attachment upload), then sent by its id until the platform forgets it (`expires_at`).
CREATE TABLE media_uploads (
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  media_file_id       uuid NOT NULL REFERENCES media_files(id) ON DELETE CASCADE,
  channel             text NOT NULL,
  platform_account_id text NOT NULL,
  platform_media_id   text NOT NULL,
  uploaded_at         timestamptz NOT NULL DEFAULT now(),
  expires_at          timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, media_file_id, channel, platform_account_id)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['media_files', 'media_fetches', 'media_uploads']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                   'WITH CHECK (tenant_id = current_tenant())', t);
  END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON media_files, media_fetches, media_uploads TO tistis_app;
