-- Written by the ai-responder (it owns leads). A patient is one lead whichever id a message
-- carries: WhatsApp's business-scoped user id (usernames, 2026) and the phone-number wa_id are
-- both kept, the lead's platform_user_id being the first one seen and `user_aliases` the
-- others. `referral`: the ad or link the patient came from (Meta referral, click-to-WhatsApp),
-- the first one kept.
ALTER TABLE leads ADD COLUMN user_aliases text[] NOT NULL DEFAULT '{}';
ALTER TABLE leads ADD COLUMN referral jsonb;
CREATE INDEX leads_user_aliases ON leads USING gin (user_aliases);
