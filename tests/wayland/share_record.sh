#!/bin/bash
# Porthole on a Wayland desktop, end to end (issue 18): sway's output painted red, a 440 Hz
# tone playing into a null sink of PipeWire's Pulse server (pipewire-pulse, as on Debian 13
# and Ubuntu desktops), `porthole share --backend wayland --audio default` (ScreenCast
# portal + PipeWire; the sound through cpal's PulseAudio client), `porthole record` for 2 s
# over loopback while the output turns green. The recording's first frame must be red, its
# last green, and its sound the tone.
#   unshare -n sh -c 'ip link set lo up; tests/wayland/share_record.sh [PORTHOLE_BIN]'
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$repo/target/debug/porthole}
work=$(mktemp -d /tmp/porthole-wl-e2e-XXXXXX)
trap 'rm -rf "$work"' EXIT
install -m 755 "$bin" "$work/porthole"
cat > "$work/inside.sh" <<'INNER'
#!/bin/bash
set -euo pipefail
work=$1
sock=$(ls "$XDG_RUNTIME_DIR"/sway-ipc.*.sock | head -1)
paint() { swaymsg -s "$sock" output HEADLESS-1 bg "$1" solid_color >/dev/null; }
paint '#c82828'
# The sound: PipeWire's Pulse server, a null sink as the default output, a tone into it.
for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.05; done
pactl load-module module-null-sink sink_name=porthole_tone >/dev/null
pactl set-default-sink porthole_tone
sox -q -n -r 48000 -c 2 -b 16 -e signed -t raw - synth 30 sine 440 vol 0.5 |
  pacat --raw --rate 48000 --channels 2 --format s16le --latency-msec 250 \
    -d porthole_tone &
tone=$!
PORTHOLE_CODE=abcdefghjkmn "$work/porthole" share --backend wayland --listen 127.0.0.1:0 \
  --no-approval --audio default --no-announce > "$work/share.out" 2> "$work/share.err" &
share=$!
for _ in $(seq 100); do grep -q '^viewer:' "$work/share.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/^viewer:/ {print $2}' "$work/share.out")
[ -n "$url" ] || { cat "$work/share.err" >&2; exit 1; }
(sleep 1.2; paint '#28b43c') &
"$work/porthole" record "$url" "$work/out.mp4" --duration 2
kill "$share" "$tone"; wait "$share" || true
grep -iE "audio|sound|pulse" "$work/share.err" >&2 || true
INNER
chmod -R a+rwX "$work"
chmod 755 "$work/inside.sh"
"$repo/scripts/wayland-desktop.sh" -- "$work/inside.sh" "$work"
centre() {
  ffmpeg -loglevel error -ss "$1" -i "$work/out.mp4" -frames:v 1 \
    -vf "crop=2:2:319:239,scale=1:1" -f rawvideo -pix_fmt rgb24 - | od -An -tu1 | xargs
}
first=$(centre 0) last=$(centre 1.3)
echo "first frame $first, last frame $last"
near() { # near "r g b" R G B
  read -r r g b <<< "$1"
  [ $(( (r-$2)*(r-$2) + (g-$3)*(g-$3) + (b-$4)*(b-$4) )) -lt 300 ]
}
near "$first" 200 40 40 || { echo "FAIL: the first frame is not red" >&2; exit 1; }
near "$last" 40 180 60 || { echo "FAIL: the last frame is not green" >&2; exit 1; }
# The sound: zero crossings of one second of the left channel (a 440 Hz tone has 880).
crossings=$(ffmpeg -loglevel error -ss 0.5 -t 1 -i "$work/out.mp4" -map 0:a -ac 1 -ar 48000 \
  -f s16le - | python3 -c '
import sys, array
a = array.array("h", sys.stdin.buffer.read())
peak = max((abs(x) for x in a), default=0)
print(sum(1 for i in range(1, len(a)) if (a[i-1] < 0) != (a[i] < 0)) if peak > 1000 else 0)')
echo "sound: $crossings zero crossings in 1 s (440 Hz: 880)"
[ "$crossings" -gt 840 ] && [ "$crossings" -lt 920 ] ||
  { echo "FAIL: the recording's sound is not the 440 Hz tone" >&2; exit 1; }
echo "ok: the Wayland desktop reached the recording, its change too, and the tone under PipeWire's Pulse server"
