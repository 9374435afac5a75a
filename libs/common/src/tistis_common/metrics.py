"""Every Prometheus metric of the platform, in one place.

Conventions: `tistis_*_total` counters, `*_seconds` histograms; labels are bounded (tenant is the
slug of a known tenant, tistis_common.tenant_labels; channel one of four, outcome/queue from
fixed sets). Dashboards and
alert rules under deploy/ use only names defined here (checked by a test).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BUILD_INFO = Gauge(
    "tistis_build_info", "Always 1; the running code's version and Python (service: the target)",
    ["version", "python"],
)

# -- broker / consumers (libs/common runner) --------------------------------------------
EVENTS_PUBLISHED = Counter(
    "tistis_events_published_total", "Events published with a broker confirm", ["event_type"]
)
PUBLISH_CONFIRM_SECONDS = Histogram(
    "tistis_publish_confirm_seconds", "Time from publish to broker confirm",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
EVENTS_CONSUMED = Counter(
    "tistis_events_consumed_total", "Events taken from a queue, by outcome",
    # outcome: ok | ignored (not the handler's event type) | retry | wait (for a claim) | dead_letter
    ["queue", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "tistis_handler_seconds", "Time a consumer handler took", ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("tistis_retries_total", "Events sent to a delayed retry", ["queue"])
DEAD_LETTERS = Counter(
    "tistis_dead_letters_total", "Events moved to a dead-letter queue", ["queue", "error_type"]
)
CONSUMER_IN_FLIGHT = Gauge("tistis_consumer_in_flight", "Events being handled now", ["queue"])
QUEUE_MESSAGES = Gauge(
    "tistis_queue_messages",
    "Messages in a queue by state (ready | unacked), sampled from the management API by the "
    "service consuming it (its retry and dead-letter queues too)", ["queue", "state"],
)

# -- ingress -----------------------------------------------------------------------------
WEBHOOKS = Counter(
    "tistis_webhooks_total", "Webhook requests by channel and outcome",
    # outcome: accepted | duplicate | bad_signature | unknown_tenant | cross_tenant |
    #          malformed | too_large | ignored | verified | verify_failed | unavailable |
    #          unknown_channel | echo | error (unexpected, answered 503, never 500)
    ["channel", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "tistis_webhook_events_total", "Platform events inside webhooks, by kind",
    ["channel", "kind"],
)
WEBHOOK_SECONDS = Histogram(
    "tistis_webhook_request_seconds", "Webhook request latency", ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
WEBHOOK_CONFIRM_SECONDS = Histogram(
    "tistis_webhook_confirm_seconds",
    "From the first publish of a webhook's events to the broker's last confirm", ["channel"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
WEBHOOKS_BY_TENANT = Counter(
    "tistis_webhook_tenant_requests_total",
    "Webhook requests of a known tenant (slug resolved) by channel and outcome",
    ["tenant", "channel", "outcome"],
)

# -- ai responder ------------------------------------------------------------------------
AI_REPLIES = Counter(
    "tistis_ai_replies_total", "Replies by outcome", ["tenant", "outcome"]
)  # outcome: ai | fallback | escalated | skipped
AI_LATENCY = Histogram(
    "tistis_ai_request_seconds", "Model call latency",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
# kind: input | output | cache_read | cache_write
AI_TOKENS = Counter("tistis_ai_tokens_total", "Model tokens", ["tenant", "kind"])
AI_CIRCUIT_OPEN = Gauge("tistis_ai_circuit_open", "1 while the model circuit breaker is open")
AI_REPLIES_IN_FLIGHT = Gauge(
    "tistis_ai_replies_in_flight",
    "Replies being composed now (conversation leased, model or n8n call under way)",
)
AI_REPLY_WAITS = Counter(
    "tistis_ai_reply_waits_total",
    "Due replies put back to wait because another attempt is composing that conversation's reply",
)

# -- dispatcher --------------------------------------------------------------------------
SENDS = Counter(
    "tistis_sends_total", "Outbound sends by channel and outcome", ["tenant", "channel", "outcome"]
)  # outcome: sent | duplicate | blocked_window | blocked_limit | opted_out | too_long |
#            rate_limited | failed | retry | parked | unknown
SEND_SECONDS = Histogram(
    "tistis_platform_request_seconds", "Platform API latency", ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WINDOW_BLOCKS = Counter(
    "tistis_window_blocks_total", "Messages refused by a messaging window", ["channel"]
)
SEND_RETRIES = Counter(
    "tistis_send_retries_total", "Platform calls retried by the dispatcher", ["channel", "reason"]
)  # reason: rate_limited | transient
TYPING = Counter(
    "tistis_typing_total", "Best-effort read receipts and typing indicators", ["channel", "outcome"]
)  # outcome: sent | failed | stale | unsupported
CONNECTION_HEALTHY = Gauge(
    "tistis_connection_healthy", "1 if the channel connection's token works", ["tenant", "channel"]
)
TOKEN_REFRESHES = Counter(
    "tistis_token_refreshes_total", "Refreshes of expiring access tokens", ["channel", "outcome"]
)  # outcome: refreshed | refused (the connection is unhealthy) | transient (tried again)

# -- scorer ------------------------------------------------------------------------------
SCORE_CHANGES = Counter("tistis_score_changes_total", "Lead score changes", ["source"])
LEADS_CLASSIFIED = Counter(
    "tistis_leads_classified_total", "Band changes", ["classification"]
)

# -- scheduler ---------------------------------------------------------------------------
BOOKINGS = Counter("tistis_bookings_total", "Appointment requests by outcome", ["outcome"])
REMINDERS = Counter("tistis_reminders_total", "Reminders by outcome", ["outcome"])
REMINDER_LAG_SECONDS = Histogram(
    "tistis_reminder_lag_seconds", "How late a reminder went out after its due time",
    buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600),
)
FOLLOWUPS = Counter("tistis_followups_total", "Follow-ups by outcome", ["outcome"])

HTTP_BODY_TIMEOUTS = Counter(
    "tistis_http_body_timeouts_total", "Requests answered 408: the body did not arrive in time"
)

# -- operations (operator API, legacy callback, realtime feed, dead letters) --------------
API_REQUESTS = Counter(
    "tistis_api_requests_total", "Operator API and callback requests by route and outcome",
    # outcome: ok | unauthorized | not_found | invalid | unavailable | error
    ["route", "outcome"],
)
REALTIME_SUBSCRIBERS = Gauge("tistis_realtime_subscribers", "Open server-sent event streams")
REALTIME_EVENTS = Counter(
    "tistis_realtime_events_total", "Events fanned out to the realtime feed", ["event_type"]
)
REALTIME_STREAMS_ENDED = Counter(
    "tistis_realtime_streams_ended_total", "Streams the server ended before the client left",
    # reason: credential (revoked, expired, or the check failed) | lifetime (client reconnects)
    ["reason"],
)
# A replay from `tistis dlq replay` is not a metric: the CLI is a short-lived process no
# Prometheus scrapes. It shows as the DLQ depth falling and the events consumed again.
# -- patient files (dispatcher media consumer, uploads, retention) -------------------------
MEDIA_FETCHES = Counter(
    "tistis_media_fetches_total", "Patient files fetched from the platforms, by outcome",
    # outcome: stored | duplicate | retry | failed | refused
    ["channel", "outcome"],
)
MEDIA_TRANSCRIPTIONS = Counter(
    "tistis_media_transcriptions_total", "Voice notes sent to speech-to-text, by outcome",
    ["outcome"],  # ok | failed | unavailable
)
MEDIA_UPLOADS = Counter(
    "tistis_media_uploads_total", "Files uploaded to a platform to be sent by id",
    ["channel", "outcome"],  # uploaded | reused | failed
)
MEDIA_DELETED = Counter(
    "tistis_media_deleted_total", "Patient files deleted", ["reason"],  # retention | erasure
)
