#!/usr/bin/env bash
# Installs every system package Porthole needs to build, run and test on Debian 12.
# Idempotent: packages already present are skipped.
# Usage: scripts/install-deps.sh [build|test|bench]  (test includes bench: the reference
# sender of tests/bench/g2g.mjs, GStreamer webrtcbin + x264, and its e2e check)
set -euo pipefail
what=${1:-test}

build_pkgs=(
  pkg-config nasm cmake clang
  libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev
  libasound2-dev libpulse-dev
  libxkbcommon-dev libxkbcommon-x11-0 libgl1-mesa-dri libegl1 libwayland-dev
  libxcursor1 libxrandr2 libxi6
  xvfb x11-xserver-utils
  libpipewire-0.3-dev libspa-0.2-dev
)
test_pkgs=(
  chromium firefox-esr xdotool xclip x11-utils xterm
  pulseaudio pulseaudio-utils sox
  ffmpeg iproute2 util-linux
  mesa-vulkan-drivers
  avahi-daemon avahi-utils dbus
  coturn nftables tcpdump python3-venv libnss3-tools
  dpkg-dev binutils librsvg2-bin desktop-file-utils appstream man-db debootstrap
  nodejs npm
  # A headless Wayland desktop (scripts/wayland-desktop.sh) and what its tests drive; the
  # build deps of third_party/xdg-desktop-portal-wlr, built once into target/xdpw.
  sway pipewire pipewire-bin pipewire-pulse wireplumber xdg-desktop-portal dbus-user-session systemd
  foot wev wl-clipboard grim xwayland
  meson ninja-build libinih-dev libgbm-dev libdrm-dev libsystemd-dev wayland-protocols
)

# tests/bench/gst_whep.py: GStreamer's webrtcbin + x264enc from Python (Debian's python3).
bench_pkgs=(
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
  gir1.2-nice-0.1
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-x
)

case "$what" in
  build|test|bench) ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac
pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")
[ "$what" = test ] || [ "$what" = bench ] && pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from outside Debian on this image: accept them when on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The browser driver for end-to-end tests (no browser download: Debian's chromium is used).
if [ "$what" = test ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -d "$here/tests/e2e/node_modules/playwright-core" ]; then
    (cd "$here/tests/e2e" && npm install --no-audit --no-fund --silent)
  fi
fi

# The viewer page's pairing module is the pake/ crate built for WebAssembly (net/build.rs).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "install-deps: adding the Rust target wasm32-unknown-unknown" >&2
  rustup target add wasm32-unknown-unknown
fi

# aiortc (PyPI), an independent WebRTC stack: the relaying man in the middle of
# tests/e2e/pairing.test.mjs. A venv in the test cache (a fresh machine rebuilds it).
if [ "$what" = test ]; then
  venv=${PORTHOLE_TEST_CACHE:-/var/cache/porthole-test}/aiortc-venv
  if ! "$venv/bin/python" -c 'import aiortc' 2>/dev/null; then
    echo "install-deps: installing aiortc into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'aiortc==1.16.0'
  fi
fi
