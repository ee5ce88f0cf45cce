#!/usr/bin/env bash
# Builds Porthole and shares this screen. With no X display, shares a private virtual
# display (Xvfb, 1920x1080) showing a live test picture. Extra arguments go to
# `porthole share` (see `porthole share --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh build
cargo build --locked --bins

if [ -n "${DISPLAY:-}" ]; then
  exec target/debug/porthole share "$@"
else
  echo "run.sh: no \$DISPLAY: sharing a virtual 1920x1080 display" >&2
  exec target/debug/porthole share --virtual 1920x1080 "$@"
fi
