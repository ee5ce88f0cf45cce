#!/usr/bin/env bash
# Installs what the tests need (Debian 12) and runs them all: Rust unit tests, then the
# end-to-end tests (Xvfb + porthole + headless Chromium) inside a loopback-only network
# namespace, so nothing they start can reach or multicast on a real network.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh test

export CARGO_TERM_COLOR=never
cargo build --locked --bins
cargo test --locked --workspace --exclude media
# media's tests one at a time: run in parallel, now and then the process aborts in glibc's
# __pthread_tpp_change_priority ("Assertion `previous_prio == -1 || …` failed"), a sign of
# memory corruption. It takes several multi-threaded openh264 encoders at once (they share
# openh264's one thread pool): the encoder tests alone, in parallel, aborted 3 runs of 40;
# on one CPU (one openh264 thread each) 0 of 40; all media tests one at a time 0 of 20.
# A share runs one encoder at a time. Not understood yet.
cargo test --locked -p media -- --test-threads=1
node --test tests/js/

if [ "$(id -u)" = 0 ]; then
  netns=(unshare -n)
  # The Wayland tests' portal backend (third_party/), built once into target/xdpw.
  scripts/wayland-desktop.sh --prepare
else
  netns=(unshare -r -n)
fi
"${netns[@]}" sh -c 'ip link set lo up && exec node --test --test-concurrency=1 tests/e2e/'

# The Wayland capture and input of media/, inside a headless sway + PipeWire + portal
# session of an unprivileged user (scripts/wayland-desktop.sh; needs root to make that
# user). Their test binary is copied where that user can run it.
if [ "$(id -u)" = 0 ]; then
  bin=$(cargo test --locked -p media --test portal_capture --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p')
  tmp=$(mktemp -d /tmp/porthole-portal-test-XXXXXX) && chmod 755 "$tmp"
  install -m 755 "$bin" "$tmp/portal_capture"
  scripts/wayland-desktop.sh -- "$tmp/portal_capture" --ignored --test-threads=1
  rm -rf "$tmp"
  "${netns[@]}" sh -c 'ip link set lo up && exec tests/wayland/share_record.sh'
fi

# The Debian package, installed into a clean Debian 12 root (PORTHOLE_PACKAGE_PROFILE=dev
# by default: the binary built above).
bash tests/package/package.test.sh
