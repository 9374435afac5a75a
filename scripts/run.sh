#!/usr/bin/env bash
# `make run`: all five services (and the sandbox of fake platforms when no real credentials are
# set) in the foreground. Ctrl-C stops them all gracefully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
set -a; eval "$(scripts/infra.sh env)"; set +a

if [ -z "${WHATSAPP_ACCESS_TOKEN:-}${META_APP_SECRET:-}" ]; then
  SANDBOX_PORT="${SANDBOX_PORT:-9100}"
  echo "run: no real credentials set: using the sandbox on :$SANDBOX_PORT"
  export GRAPH_API_BASE_URL="http://127.0.0.1:$SANDBOX_PORT"
  export TIKTOK_API_BASE_URL="http://127.0.0.1:$SANDBOX_PORT"
  export META_APP_SECRET="sandbox-app-secret" TIKTOK_CLIENT_SECRET="sandbox-app-secret"
  export WHATSAPP_VERIFY_TOKEN="${WHATSAPP_VERIFY_TOKEN:-tistis_verify_token}"
  # Voice notes: the sandbox's speech-to-text fake (OpenAI's transcription wire format).
  export TRANSCRIPTION_BASE_URL="${TRANSCRIPTION_BASE_URL:-http://127.0.0.1:$SANDBOX_PORT}"
  START_SANDBOX=1
  # The fake model too, when asked: without a key the responder answers with its FAQ fallback.
  if [ "${SANDBOX_AI:-0}" = 1 ] && [ -z "${ANTHROPIC_API_KEY:-}" ]; then
    export ANTHROPIC_API_KEY="sk-ant-sandbox" ANTHROPIC_BASE_URL="http://127.0.0.1:$SANDBOX_PORT"
  fi
fi
export LOG_JSON="${LOG_JSON:-true}"
# Loopback unless asked: the operator API, /metrics (tenant slugs) and webhooks signed with the
# public sandbox secret are not for the local network. Containers keep the settings' 0.0.0.0.
export HTTP_HOST="${HTTP_HOST:-127.0.0.1}"

pids=()
stop() {
  trap - INT TERM
  echo "run: stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "run: stopped"
}
trap stop INT TERM

launch() { # name port command...
  local name=$1 port=$2; shift 2
  HTTP_PORT=$port SERVICE_NAME=$name "$@" &
  pids+=($!)
  echo "run: $name on $HTTP_HOST:$port (pid $!)"
}

if [ "${START_SANDBOX:-0}" = 1 ]; then
  demo=()
  [ "${SANDBOX_AI:-0}" = 1 ] && demo=(--demo-brain)  # the fake model: the demo brain
  launch sandbox "$SANDBOX_PORT" .venv/bin/tistis-sandbox serve --port "$SANDBOX_PORT" "${demo[@]}"
fi
launch ingress 8000 .venv/bin/tistis-ingress
launch ai-responder 8001 .venv/bin/tistis-ai-responder
launch dispatcher 8002 .venv/bin/tistis-dispatcher
launch scorer 8003 .venv/bin/tistis-scorer
launch scheduler 8004 .venv/bin/tistis-scheduler

cat <<MSG
run: the clinic's inbox: http://127.0.0.1:8000/inbox
  demo login: clinic esva-dental, recepcion@esva-dental.mx / demo-recepcion-2026
              (admin: admin@esva-dental.mx / demo-admin-2026)
run: ready soon. Play a patient in another terminal:
  .venv/bin/tistis-sandbox play "Hola, quiero una cita para limpieza" --tenant esva-dental
  .venv/bin/tistis-sandbox play "¿Esto es una caries?" --file foto-muela.png   (referencia.pdf, nota-de-voz.ogg)
Health: curl localhost:8000/healthz   Metrics: curl localhost:8001/metrics
MSG
wait
