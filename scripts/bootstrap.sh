#!/usr/bin/env bash
# Python side of a fresh machine: uv, then the locked workspace into .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv" >&2
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet
