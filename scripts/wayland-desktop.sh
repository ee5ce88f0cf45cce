#!/bin/bash
# A headless Wayland desktop for tests: sway (pixman, HEADLESS-1), PipeWire + WirePlumber +
# pipewire-pulse, the patched xdg-desktop-portal-wlr (third_party/, built once into
# target/xdpw) and xdg-desktop-portal, in a private D-Bus session of an unprivileged user
# (sway refuses root). Runs COMMAND... inside that session, as that user, with
# WAYLAND_DISPLAY, XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS set; everything stops with
# it.
#   scripts/wayland-desktop.sh [--size WxH] [--user NAME] -- COMMAND...
#   scripts/wayland-desktop.sh --prepare    (only builds the portal backend, once)
# For a diagnosis: XDPW_LOGLEVEL=TRACE (the portal backend's log level, ERROR otherwise);
# WL_KEEP_LOGS=DIR copies the desktop's logs (sway, PipeWire, the portals) there at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
size=640x480
user=porthole-wl
prepare=
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --prepare) prepare=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--size WxH] [--user NAME] -- COMMAND... | --prepare" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || [ -n "$prepare" ] || { echo "$0: no command" >&2; exit 2; }

xdpw=$repo/target/xdpw/xdg-desktop-portal-wlr
if [ ! -x "$xdpw" ]; then
  src=$repo/third_party/xdg-desktop-portal-wlr
  build=$repo/target/xdpw/build
  rm -rf "$build"
  meson setup "$build" "$src" -Dsystemd=disabled -Dman-pages=disabled >/dev/null
  ninja -C "$build" >/dev/null
  cp "$build/xdg-desktop-portal-wlr" "$xdpw"
fi
[ -z "$prepare" ] || exit 0

id "$user" >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin "$user"
run=$(mktemp -d /tmp/porthole-wl-XXXXXX)
chmod 755 "$run"
install -m 755 "$xdpw" "$run/xdg-desktop-portal-wlr"
# xdg-desktop-portal finds its backends by their .portal files; Debian installs wlr.portal
# only with its own xdg-desktop-portal-wlr package, which we do not use: give it ours.
install -D -m 644 "$repo/third_party/xdg-desktop-portal-wlr/wlr.portal" "$run/portals/wlr.portal"
cat > "$run/session.sh" <<'INNER'
#!/bin/bash
set -euo pipefail
run=$1 size=$2; shift 2
export XDG_RUNTIME_DIR=$run/xdg
mkdir -p "$XDG_RUNTIME_DIR" "$run/config/sway" "$run/config/xdg-desktop-portal-wlr"
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_CONFIG_HOME=$run/config XDG_STATE_HOME=$run/state XDG_CURRENT_DESKTOP=sway XDG_SESSION_TYPE=wayland
export WLR_BACKENDS=headless WLR_RENDERER=pixman WLR_LIBINPUT_NO_DEVICES=1
printf "output HEADLESS-1 resolution %s\nxwayland disable\n" "$size" > "$run/config/sway/config"
printf '[screencast]\nchooser_type=none\noutput_name=HEADLESS-1\n' \
  > "$run/config/xdg-desktop-portal-wlr/config"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
sway > "$run/sway.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do
  s=$(ls "$XDG_RUNTIME_DIR"/wayland-? 2>/dev/null | head -1 || true)
  [ -n "$s" ] && break
  sleep 0.05
done
[ -n "$s" ] || { echo "sway did not start:" >&2; cat "$run/sway.log" >&2; exit 1; }
export WAYLAND_DISPLAY=$(basename "$s")
dbus-update-activation-environment WAYLAND_DISPLAY XDG_CURRENT_DESKTOP XDG_RUNTIME_DIR \
  XDG_CONFIG_HOME 2>/dev/null
pipewire > "$run/pipewire.log" 2>&1 & pids+=($!)
sleep 0.3
# PipeWire's PulseAudio server, as desktops run it (sound for `--audio default`).
pipewire-pulse > "$run/pipewire-pulse.log" 2>&1 & pids+=($!)
wireplumber > "$run/wireplumber.log" 2>&1 & pids+=($!)
XDPW_PERSIST_MODE=permanent "$run/xdg-desktop-portal-wlr" -r -l "${XDPW_LOGLEVEL:-ERROR}" \
  > "$run/xdpw.log" 2>&1 & pids+=($!)
XDG_DESKTOP_PORTAL_DIR=$run/portals /usr/libexec/xdg-desktop-portal -r > "$run/xdp.log" 2>&1 &
pids+=($!)
# The portal answers once both are on the bus.
for _ in $(seq 100); do
  busctl --user status org.freedesktop.portal.Desktop >/dev/null 2>&1 &&
    busctl --user status org.freedesktop.impl.portal.desktop.wlr >/dev/null 2>&1 && break
  sleep 0.05
done
"$@"
INNER
chmod 755 "$run/session.sh"
chown -R "$user" "$run"
# What the session started through sway (`swaymsg exec`: foot, wev…) is not a child of
# session.sh and outlives it: a wev whose compositor was gone spun at a full core. At exit,
# end every process of the session, known by its XDG_RUNTIME_DIR.
end_session() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    { tr '\0' '\n' < "$env"; } 2>/dev/null | grep -qxF "XDG_RUNTIME_DIR=$run/xdg" &&
      kill "$pid" 2>/dev/null || true
  done
}
# …and remove its directory: also when the harness stops us (the explicit removal at the
# end was skipped then, and left a directory behind per test run), and again if a process
# of the session was still writing into it.
cleanup() {
  end_session
  if [ -n "${WL_KEEP_LOGS:-}" ]; then
    mkdir -p "$WL_KEEP_LOGS" && cp "$run"/*.log "$WL_KEEP_LOGS"/ 2>/dev/null || true
  fi
  for _ in 1 2 3 4 5; do
    rm -rf "$run" 2>/dev/null && [ ! -e "$run" ] && break
    sleep 0.2
  done
}
trap cleanup EXIT
status=0
runuser -u "$user" -- dbus-run-session -- "$run/session.sh" "$run" "$size" "$@" || status=$?
if [ $status -ne 0 ]; then
  for f in "$run"/*.log; do echo "----- $f" >&2; tail -20 "$f" >&2; done
fi
exit $status
