#!/usr/bin/env bash
# Installs what tests/deploy need beyond `uv sync`: promtool, which no PyPI package ships.
# kubectl (with kustomize), hadolint, docker compose and the Kubernetes JSON schemas come from
# the root dev dependency group. Idempotent, and instant once promtool is there.
#
# promtool is taken out of Debian's `prometheus` package into .infra/tools/bin (git-ignored)
# rather than installing the package, which would also bring a Prometheus server and its web
# assets onto the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.infra/tools/bin"

log() { echo "install-checkers: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x "$BIN/promtool" ] || command -v promtool >/dev/null 2>&1; then
  exit 0
fi

log "extracting promtool from Debian's prometheus package into $BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `apt-get download` needs current package lists; refresh them only when it fails.
if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
  as_root apt-get update -qq
  (cd "$work" && apt-get download -qq prometheus)
fi
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
mkdir -p "$BIN"
install -m 0755 "$work/usr/bin/promtool" "$BIN/promtool"
"$BIN/promtool" --version | head -n 1 >&2
