#!/usr/bin/env bash
# Debian's chromium for the inbox's browser tests (Playwright drives it by executable_path:
# no browser download). Idempotent, instant once installed.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "install-browser: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
if ! as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
/usr/bin/chromium --version >&2
