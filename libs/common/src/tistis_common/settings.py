"""Settings read from the environment, once, in each service's main.

Names follow the product guide where it has them (WHATSAPP_*, META_APP_SECRET,
TIKTOK_CLIENT_SECRET, ANTHROPIC_API_KEY, CRON_SECRET). Per-tenant values stored in
`channel_connections` / `ai_tenant_context` win over these.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tistis_common.secrets import DEV_KEY


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    service_name: str = "tistis"
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    # A request's body must be complete this long after the request began (else 408, closed).
    http_body_timeout_seconds: float = 20.0

    # Infrastructure
    database_url: str = "postgresql://tistis_app:tistis_app@127.0.0.1:5432/tistis"
    migration_database_url: str = "postgresql://tistis:tistis@127.0.0.1:5432/tistis"
    db_pool_min: int = 1
    db_pool_max: int = 10
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:15672"
    prefetch: int = 32
    # How often a consumer service samples its queues' depths into tistis_queue_messages.
    queue_metrics_interval_seconds: float = 15.0
    # Delays in seconds between attempts; after the last one the event goes to <queue>.dlq.
    retry_delays: list[float] = Field(default_factory=lambda: [1.0, 10.0, 60.0, 600.0])
    shutdown_grace_seconds: float = 25.0

    # Outside APIs: base URLs so that tests and the sandbox point real clients at fakes.
    graph_api_base_url: str = "https://graph.facebook.com"
    # One version for every Graph call (WhatsApp, Messenger, Instagram). v26.0 (2026-07-29) is
    # the newest; v21.0 expires 2027-01-21 (developers.facebook.com/docs/graph-api/changelog).
    graph_api_version: str = "v26.0"
    tiktok_api_base_url: str = "https://business-api.tiktok.com"
    tiktok_api_version: str = "v1.3"
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-sonnet-4-6"
    # AI responder: a burst of patient messages within this window gets one reply.
    ai_debounce_seconds: float = 1.5
    ai_history_messages: int = 20  # last N messages of the conversation sent to the model
    ai_timeout_seconds: float = 30.0
    ai_sdk_max_retries: int = 2  # the SDK's own retries (429, 5xx, timeouts) within one attempt
    ai_circuit_failures: int = 5  # consecutive failed model calls that open the circuit
    ai_circuit_reset_seconds: float = 30.0  # open this long, then one trial call
    # Replies composed at once per replica (model or n8n calls in flight): the prefetch of
    # `ai-responder.replies`; beyond it the broker keeps the rest (backpressure, bounded memory).
    ai_max_in_flight: int = 500
    # A model still thinking after this long: the patient is shown read + typing (best-effort).
    ai_typing_after_seconds: float = 1.0

    # Fernet keys for the secrets stored in the database, comma-separated, newest first
    # (tistis_common.secrets). The default is a public development key: set your own.
    secrets_keys: str = DEV_KEY

    # Guide's global credentials (fallbacks when a connection has none of its own). The guide's
    # WHATSAPP_PHONE_NUMBER_ID / WHATSAPP_BUSINESS_ACCOUNT_ID are not settings: a number is a
    # connection row (`tistis connection add <tenant> whatsapp <phone_number_id>`).
    whatsapp_access_token: str | None = None
    whatsapp_verify_token: str | None = None
    # The GET handshake of the app-level callback URL (`/api/webhook/{channel}`), the one a
    # platform app shared by every clinic registers.
    webhook_verify_token: str | None = None
    meta_app_secret: str | None = None
    meta_app_id: str | None = None
    tiktok_client_secret: str | None = None
    tiktok_client_key: str | None = None  # the app's client key, for token refreshes
    tiktok_signature_tolerance_seconds: int = 300
    anthropic_api_key: str | None = None
    cron_secret: str | None = None
    # Legacy callback without an Idempotency-Key: the same action (tenant, content) within this
    # window is one event (n8n's retry); after it, the same text goes again.
    callback_dedup_window_hours: float = 24.0
    n8n_webhook_url: str | None = None
    n8n_api_key: str | None = None

    # Realtime stream (ingress): the credential is asked again this often while a stream is open
    # (a revoked or expired key stops reading within this), and a stream ends after its maximum
    # lifetime, so that the client reconnects (Last-Event-ID: nothing missed) and is checked anew.
    realtime_recheck_seconds: float = 5.0
    realtime_max_stream_seconds: float = 900.0

    # Dispatcher; per-channel values in channel_connections.settings win (e.g. "window_hours")
    dispatcher_http_timeout_seconds: float = 10.0
    dispatcher_tenant_concurrency: int = 4
    dispatcher_tenant_rate_per_second: float = 20.0  # platform calls per tenant; 0: no limit
    dispatcher_sending_timeout_seconds: float = 120.0  # a claim older than this is a crash
    dispatcher_max_inline_wait_seconds: float = 5.0  # longer Retry-After: back to the queue
    dispatcher_inline_retries: int = 2
    dispatcher_max_parts: int = 5  # a longer text is refused, not truncated
    opt_out_words: list[str] = Field(default_factory=lambda: ["STOP", "BAJA"])
    opt_in_words: list[str] = Field(default_factory=lambda: ["START", "ALTA"])  # undo an opt-out
    tiktok_window_hours: float = 24.0  # the guide says 24 h, TikTok allows 48 h
    # Messages since the patient's last one (TikTok allows 10; there is no calendar-day cap).
    tiktok_unanswered_limit: int = 10
    # Tokens that expire are refreshed when less than the margin is left (TikTok: a day-long
    # access token; Instagram Login: 60 days, refreshable once 24 h old), checked this often.
    token_refresh_interval_seconds: float = 300.0
    tiktok_token_refresh_margin_seconds: float = 6 * 3600.0
    instagram_token_refresh_margin_seconds: float = 7 * 86400.0
    # Instagram API with Instagram Login lives on its own host (refresh_access_token).
    instagram_api_base_url: str = "https://graph.instagram.com"

    # Patient files (tistis_common.storage): "fs" keeps them under media_dir, "s3" in a bucket of
    # any S3-compatible store. Links to them are signed with media_signing_key (HMAC) and expire.
    media_store: str = "fs"
    media_dir: str = ".infra/media"
    media_s3_bucket: str = "tistis-media"
    media_s3_endpoint_url: str | None = None
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: str | None = None
    media_signing_key: str = "sandbox-media-signing-key"
    media_link_ttl_seconds: int = 300
    media_fetch_attempts: int = 3  # platform media URLs are short-lived: retried promptly, in place
    media_fetch_backoff_seconds: float = 0.5
    media_retention_days: int = 365  # a tenant's `settings.media_retention_days` wins
    # Speech-to-text for voice notes: any OpenAI-compatible POST {base}/v1/audio/transcriptions
    # (a self-hosted Whisper server, a provider); unset, voice notes are kept but not transcribed.
    transcription_base_url: str | None = None
    transcription_api_key: str | None = None
    transcription_model: str = "whisper-1"
    transcription_timeout_seconds: float = 30.0

    # Scheduler (its own clock: one tick checks reminders and the outbox; follow-ups less often)
    scheduler_tick_seconds: float = 60.0
    scheduler_followup_interval_seconds: float = 4 * 3600.0
    scheduler_slot_step_minutes: int = 30  # candidate start times, in the branch's local time
    scheduler_min_notice_minutes: int = 60  # nothing is booked sooner than this from now
    scheduler_search_days: int = 21  # how far ahead free slots are looked for
    scheduler_offer_count: int = 5  # free slots offered when no preference fits (WhatsApp: <= 10)
    scheduler_reminder_hours: float = 24.0
    scheduler_followup_after_hours: float = 48.0
    scheduler_followup_max: int = 3
    scheduler_no_show_followup: bool = True  # a no-show gets `seguimiento` (or text) at once
    scheduler_followup_cold_score: int = 20  # LeadScoreSet score for a lead gone cold (<= 39)
    scheduler_outbox_grace_seconds: float = 30.0  # unpublished pass events older than this resend

    # The inbox (ingress): staff sessions, rate limits shared by every replica (counted in the
    # database). An open event stream re-checks a session like a key (realtime_recheck_seconds).
    inbox_session_hours: float = 12.0
    inbox_cookie_secure: bool = False  # true behind TLS: the session cookie travels only on https
    inbox_requests_per_minute: int = 600  # per API key or session
    inbox_login_attempts_per_15_minutes: int = 10  # per tenant and email
    inbox_login_attempts_per_address_15_minutes: int = 100  # per client address (a clinic's NAT)
    inbox_template_sync_seconds: float = 900.0  # WhatsApp templates from Meta; 0: only on demand
