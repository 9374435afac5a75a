#!/usr/bin/env bash
# A Debian trixie root folder of the project's with RabbitMQ 4.0 (Debian's own package) in it, for
# `make test-rabbitmq4`: scripts/infra.sh runs the broker from it (TISTIS_RABBITMQ_ROOT), chrooted,
# on ports of its own. The host's system packages stay as they are; only debootstrap (the tool)
# is installed on the host when missing. About a minute the first time, instant after.
#   scripts/rabbitmq4-root.sh            prints the folder
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${TISTIS_RABBITMQ4_ROOT:-$ROOT/.infra/trixie}"
MIRROR="${TISTIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "rabbitmq4-root: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$TARGET/usr/lib/rabbitmq/bin/rabbitmq-server" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  log "debootstrap trixie with rabbitmq-server into $TARGET"
  rm -rf "$TARGET.partial"
  as_root debootstrap --variant=minbase --include=rabbitmq-server trixie "$TARGET.partial" "$MIRROR" \
    >"$ROOT/.infra/debootstrap.log" 2>&1 || { log "failed, see .infra/debootstrap.log"; exit 1; }
  mv "$TARGET.partial" "$TARGET"
fi
ls -d "$TARGET"/usr/lib/rabbitmq/lib/rabbitmq_server-* | sed 's/.*rabbitmq_server-/rabbitmq /' >&2
echo "$TARGET"
