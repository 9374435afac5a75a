#!/usr/bin/env bash
# Local RabbitMQ + PostgreSQL without Docker: installs the Debian packages when missing,
# starts both on loopback with data in a project-local folder, waits until they answer,
# creates the database, roles and vhost. Safe to run twice, and when a server is already up.
#   scripts/infra.sh up|down [postgres|rabbitmq] | status | env
# Ports: TISTIS_PG_PORT, TISTIS_AMQP_PORT, TISTIS_MGMT_PORT (a second instance on other ports
# runs beside the first: the chaos tests restart their own servers that way).
# TISTIS_RABBITMQ_ROOT: run RabbitMQ from that Debian root folder instead of the host's packages
# (`make test-rabbitmq4`: 4.0 from trixie, made by scripts/rabbitmq4-root.sh), chrooted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_PORT="${TISTIS_PG_PORT:-5432}"
AMQP_PORT="${TISTIS_AMQP_PORT:-5672}"
MGMT_PORT="${TISTIS_MGMT_PORT:-15672}"
# One node name per port, so that a second instance (another checkout on other ports) can run.
RMQ_NODE="tistis@localhost"; [ "$AMQP_PORT" = 5672 ] || RMQ_NODE="tistis-$AMQP_PORT@localhost"
PG_DIR="postgres"; [ "$PG_PORT" = 5432 ] || PG_DIR="postgres-$PG_PORT"
RMQ_DIR="rabbitmq"; [ "$AMQP_PORT" = 5672 ] || RMQ_DIR="rabbitmq-$AMQP_PORT"
PG_SUPER_PASSWORD="postgres"          # loopback-only development cluster
PG_OWNER="tistis"; PG_OWNER_PASSWORD="tistis"           # owns the schema, runs migrations
PG_APP="tistis_app"; PG_APP_PASSWORD="tistis_app"       # what services use: RLS applies
PG_DB="tistis"
RMQ_ROOT="${TISTIS_RABBITMQ_ROOT:-}"

# Data lives in the project (git-ignored) when the service users can reach it; a checkout under
# a private folder (mktemp -d is 0700) cannot be entered by them, so fall back to /var/tmp.
data_dir() {
  local local_dir="$ROOT/.infra"
  mkdir -p "$local_dir"
  if id postgres >/dev/null 2>&1 && as_user postgres test -x "$local_dir" 2>/dev/null; then
    echo "$local_dir"
  else
    local d="/var/tmp/tistis-infra-$(echo "$ROOT" | md5sum | cut -c1-10)"
    mkdir -p "$d"; chmod 755 "$d"; echo "$d"
  fi
}

log() { echo "infra: $*" >&2; }

# From / so that a service user never needs to enter a private checkout folder.
as_user() { local user=$1; shift; (cd / && runuser -u "$user" -- "$@"); }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing() {
  local need=()
  [ -n "$RMQ_ROOT" ] || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -qq
    # policy-rc.d style: the packages must not start their own system instances.
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "$what did not come up in ${secs}s"; return 1
}

psql_super() { PGOPTIONS="-c client_min_messages=warning" PGPASSWORD="$PG_SUPER_PASSWORD" psql -v ON_ERROR_STOP=1 -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

pg_up() {
  local dir; dir="$(data_dir)/$PG_DIR"
  if port_open "$PG_PORT"; then
    log "postgres already answering on $PG_PORT"
  else
    local bin; bin="$(pg_bin)"
    mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      log "initdb in $dir"
      local pw; pw="$(mktemp)"; echo "$PG_SUPER_PASSWORD" >"$pw"; chmod 644 "$pw"
      as_user postgres "$bin/initdb" -D "$dir" -U postgres --pwfile="$pw" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
      rm -f "$pw"
    fi
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_user postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c max_connections=300 -c fsync=${TISTIS_PG_FSYNC:-on}" >/dev/null
  fi
  wait_for postgres 60 psql_super -d postgres -c "select 1"
  psql_super -d postgres <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_OWNER') THEN
    CREATE ROLE $PG_OWNER LOGIN CREATEDB CREATEROLE PASSWORD '$PG_OWNER_PASSWORD';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_APP') THEN
    CREATE ROLE $PG_APP LOGIN NOBYPASSRLS PASSWORD '$PG_APP_PASSWORD';
  END IF;
END \$\$;
GRANT $PG_APP TO $PG_OWNER WITH ADMIN OPTION;
SQL
  if [ -z "$(psql_super -d postgres -c "select 1 from pg_database where datname='$PG_DB'")" ]; then
    psql_super -d postgres -c "CREATE DATABASE $PG_DB OWNER $PG_OWNER"
  fi
}

# The broker's data folder as the server sees it (inside the root when there is one).
rmq_dir() { if [ -n "$RMQ_ROOT" ]; then echo "/var/lib/tistis/$RMQ_DIR"; else echo "$(data_dir)/$RMQ_DIR"; fi; }

# A command as the rabbitmq user: on the host, or in the Debian root with a /proc of its own
# (mounted in a private mount namespace, so it goes away with the process).
rmq_as() {
  if [ -n "$RMQ_ROOT" ]; then
    unshare -m --propagation private -- sh -c \
      'mount -t proc proc "$0/proc" && exec chroot "$0" runuser -u rabbitmq -- "$@"' "$RMQ_ROOT" "$@"
  else
    as_user rabbitmq "$@"
  fi
}

rmq_env() { # fills RMQ_ENV for `env`
  local dir=$1
  RMQ_ENV=(HOME="$dir" RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log"
    RABBITMQ_NODENAME="$RMQ_NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    RABBITMQ_PID_FILE="$dir/rabbitmq.pid" ERL_EPMD_ADDRESS=127.0.0.1
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}")
  # Another Erlang than the host's: its own port mapper.
  [ -z "$RMQ_ROOT" ] || RMQ_ENV+=(ERL_EPMD_PORT=4370)
}

rmq_ctl() { local dir; dir="$(rmq_dir)"; rmq_env "$dir"; rmq_as env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RMQ_NODE" "$@"; }

mgmt() { curl -fsS -u guest:guest "$@"; }

rmq_up() {
  local dir; dir="$(rmq_dir)"
  if port_open "$AMQP_PORT"; then
    log "rabbitmq already answering on $AMQP_PORT"
  else
    local seen="$RMQ_ROOT$dir"  # the same folder, from here
    mkdir -p "$seen/mnesia" "$seen/log"
    echo "[rabbitmq_management]." >"$seen/enabled_plugins"
    cat >"$seen/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
loopback_users.guest = true
vm_memory_high_watermark.relative = 0.3
disk_free_limit.absolute = 50MB
CONF
    [ -f "$seen/.erlang.cookie" ] || { head -c 20 /dev/urandom | md5sum | cut -c1-20 >"$seen/.erlang.cookie"; }
    chmod 400 "$seen/.erlang.cookie"
    if [ -n "$RMQ_ROOT" ]; then chroot "$RMQ_ROOT" chown -R rabbitmq:rabbitmq "$dir"; else chown -R rabbitmq:rabbitmq "$dir"; fi
    log "starting rabbitmq on 127.0.0.1:$AMQP_PORT (management on $MGMT_PORT)"
    rmq_env "$dir"
    rmq_as env "${RMQ_ENV[@]}" setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$seen/log/console.log" 2>&1 </dev/null &
  fi
  wait_for rabbitmq 120 port_open "$AMQP_PORT"
  wait_for rabbitmq-management 60 mgmt "http://127.0.0.1:$MGMT_PORT/api/overview"
  rmq_policy
}

# RabbitMQ 4.x gives quorum queues a delivery limit of 20, and `tistis dlq list/show` peek by
# get-and-requeue: without this policy about 20 looks delete a dead letter. Older brokers have no
# such limit and refuse -1, so it is set on 4.x only. The definition is
# tistis_common.topology.DLQ_POLICY (tests/deploy checks that they agree).
DLQ_POLICY='{"pattern": "\\.dlq$", "apply-to": "quorum_queues", "priority": 1, "definition": {"delivery-limit": -1}}'
rmq_policy() {
  local base="http://127.0.0.1:$MGMT_PORT" version
  version="$(mgmt "$base/api/overview?columns=rabbitmq_version" | sed -E 's/.*"rabbitmq_version":"([0-9]+).*/\1/')"
  if [ "${version:-0}" -ge 4 ]; then
    mgmt -X PUT -H 'content-type: application/json' "$base/api/policies/%2F/tistis-dlq" -d "$DLQ_POLICY" >/dev/null
    log "rabbitmq $version: policy tistis-dlq (delivery-limit -1 on *.dlq) set on /"
  fi
}

up() {
  install_missing
  pg_up
  rmq_up
  log "ready: postgres 127.0.0.1:$PG_PORT, rabbitmq 127.0.0.1:$AMQP_PORT"
}

pg_down() {
  local dir; dir="$(data_dir)/$PG_DIR"
  if [ -f "$dir/postmaster.pid" ]; then
    log "stopping postgres"
    as_user postgres "$(pg_bin)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
  fi
}

rmq_down() {
  if [ -d "$RMQ_ROOT$(rmq_dir)/mnesia" ] && port_open "$AMQP_PORT"; then
    log "stopping rabbitmq"
    rmq_ctl shutdown >/dev/null 2>&1 || rmq_ctl stop >/dev/null 2>&1 || true
  fi
}

down() { pg_down; rmq_down; }

status() {
  port_open "$PG_PORT" && echo "postgres: up ($PG_PORT)" || echo "postgres: down"
  port_open "$AMQP_PORT" && echo "rabbitmq: up ($AMQP_PORT)" || echo "rabbitmq: down"
}

# The environment the services and tests use against this local infrastructure.
env_vars() {
  cat <<ENV
DATABASE_URL=postgresql://$PG_APP:$PG_APP_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
MIGRATION_DATABASE_URL=postgresql://$PG_OWNER:$PG_OWNER_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:$MGMT_PORT
ENV
}

case "${1:-up}" in
  up) case "${2:-all}" in postgres) install_missing; pg_up ;; rabbitmq) install_missing; rmq_up ;; *) up ;; esac ;;
  down) case "${2:-all}" in postgres) pg_down ;; rabbitmq) rmq_down ;; *) down ;; esac ;;
  status) status ;;
  env) env_vars ;;
  rabbitmqctl) shift; rmq_ctl "$@" ;;
  rabbitmq-policy) rmq_policy ;;
  *) echo "usage: $0 up|down [postgres|rabbitmq] | status | env | rabbitmqctl ..." >&2; exit 2 ;;
esac
