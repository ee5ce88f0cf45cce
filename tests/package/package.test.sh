#!/usr/bin/env bash
# The Debian package, end to end (run by scripts/test.sh; needs root):
#  - packaging/build-deb.sh twice: the same file list, control fields and bytes;
#  - the desktop entry passes desktop-file-validate, the metainfo appstreamcli validate;
#  - the man pages render with man -l, bash completes `porthole <TAB>` to the commands;
#  - installed with apt into a clean Debian 12 root (debootstrap minbase, cached by
#    tests/package/pristine-root.sh), dependencies resolved there from Debian's mirror:
#    without its Recommends, `porthole --version` works and `share --virtual` says to
#    install xvfb; with them, `porthole share --virtual 640x480 …` prints its viewer line
#    (inside a loopback-only network namespace) and serves the viewer page.
#
#   PORTHOLE_PACKAGE_PROFILE  dev (default: packages the debug binary scripts/test.sh has
#                             just built) or release (builds the release binary first)
#   PORTHOLE_BIN              package this binary instead (as the e2e tests run it)
#   PORTHOLE_TEST_CACHE       where the pristine root and downloaded .debs are kept
#                             (default /var/cache/porthole-test)
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if [ "$(id -u)" != 0 ]; then
  echo "package: skipped: installing into a chroot needs root" >&2
  exit 0
fi
# Everything mounted below lives in a private mount namespace: gone when this script ends,
# however it ends (the trap also unmounts it on the way out).
if [ -z "${PORTHOLE_PACKAGE_NS:-}" ]; then
  exec env PORTHOLE_PACKAGE_NS=1 unshare --mount --propagation private bash "$repo/tests/package/package.test.sh" "$@"
fi

profile=${PORTHOLE_PACKAGE_PROFILE:-dev}
cache=${PORTHOLE_TEST_CACHE:-/var/cache/porthole-test}
work=$(mktemp -d /var/tmp/porthole-package.XXXXXX)
chmod 0755 "$work" # man reads pages as its own user
chroot_dir=$work/chroot
cleanup() {
  # Whatever still runs inside the root (a share, its Xvfb) is stopped first.
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$chroot_dir" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for m in proc dev/pts dev tmp var/cache/apt/archives; do
    mountpoint -q "$chroot_dir/$m" 2>/dev/null && umount -l "$chroot_dir/$m"
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  [ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/    /'
  return 0
}
# check NAME COMMAND...: passes when the command succeeds; its output is shown when not.
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then ok "$name"; else not_ok "$name" "$(tail -n 40 "$work/out")"; fi
}
finish() {
  echo "package: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit
}

for tool in desktop-file-validate appstreamcli man dpkg-deb debootstrap rsvg-convert; do
  command -v "$tool" >/dev/null || { not_ok "tools: $tool is missing (scripts/install-deps.sh test)"; finish; }
done

# --- build twice --------------------------------------------------------------------
build_args=(--profile "$profile")
[ "$profile" = dev ] && build_args+=(--no-build)
[ -n "${PORTHOLE_BIN:-}" ] && build_args+=(--binary "$PORTHOLE_BIN")
start=$(date +%s)
if ! deb_a=$(packaging/build-deb.sh "${build_args[@]}" --out "$work/a" 2>"$work/build.log"); then
  not_ok "build-deb.sh --profile $profile" "$(tail -n 40 "$work/build.log")"
  finish
fi
ok "build-deb.sh --profile $profile: $(basename "$deb_a") ($(($(stat -c %s "$deb_a") / 1024)) KiB, $(($(date +%s) - start)) s)"
if ! deb_b=$(packaging/build-deb.sh "${build_args[@]}" --no-build --out "$work/b" 2>"$work/build.log"); then
  not_ok "build-deb.sh, second time" "$(tail -n 40 "$work/build.log")"
  finish
fi
version=$(dpkg-deb -f "$deb_a" Version)
[ "$(basename "$deb_a")" = "porthole_${version}_$(dpkg --print-architecture).deb" ] &&
  [ "$(dirname "$deb_a")" = "$work/a" ] &&
  ok "named porthole_<version>_<arch>.deb" || not_ok "named porthole_<version>_<arch>.deb" "$deb_a"

check "reproducible: the same file list (dpkg-deb -c)" \
  diff <(dpkg-deb -c "$deb_a") <(dpkg-deb -c "$deb_b")
check "reproducible: the same control fields" \
  diff <(dpkg-deb -f "$deb_a") <(dpkg-deb -f "$deb_b")
check "reproducible: the same bytes" \
  test "$(sha256sum <"$deb_a")" = "$(sha256sum <"$deb_b")"

# --- contents -------------------------------------------------------------------------
pkg=$work/contents
dpkg-deb -x "$deb_a" "$pkg"
app_id=io.github.porthole.Porthole
missing=()
for f in usr/bin/porthole \
  usr/share/applications/$app_id.desktop \
  usr/share/metainfo/$app_id.metainfo.xml \
  usr/share/icons/hicolor/scalable/apps/$app_id.svg \
  usr/share/icons/hicolor/{16x16,32x32,48x48,64x64,128x128,256x256,512x512}/apps/$app_id.png \
  usr/share/man/man1/porthole.1.gz usr/share/man/man1/porthole-share.1.gz \
  usr/share/bash-completion/completions/porthole \
  usr/share/zsh/vendor-completions/_porthole \
  usr/share/fish/vendor_completions.d/porthole.fish \
  usr/lib/systemd/user/porthole-share.service \
  usr/share/doc/porthole/copyright; do
  [ -s "$pkg/$f" ] || missing+=("$f")
done
[ ${#missing[@]} = 0 ] && ok "holds the binary, desktop entry, metainfo, icons, man pages, completions, unit" ||
  not_ok "package contents" "missing: ${missing[*]}"
owned_by_root() { ! dpkg-deb -c "$deb_a" | awk '$2 != "root/root"' | grep .; }
check "every file owned by root:root" owned_by_root
depends=$(dpkg-deb -f "$deb_a" Depends)
recommends=$(dpkg-deb -f "$deb_a" Recommends)
[[ $depends == *"libc6 (>= "* && $depends == *libxcb* && $depends == *libpipewire-0.3-0* &&
  $depends != *xvfb* ]] &&
  [[ $recommends == *xvfb* && $recommends == *pulseaudio* && $recommends == *xdg-desktop-portal* ]] &&
  ok "Depends from the linked libraries (X11 and PipeWire), Xvfb, PulseAudio and the portal recommended" ||
  not_ok "Depends/Recommends" "Depends: $depends" "Recommends: $recommends"

check "desktop-file-validate" desktop-file-validate "$pkg/usr/share/applications/$app_id.desktop"
check "appstreamcli validate --no-net" appstreamcli validate --no-net "$pkg/usr/share/metainfo/$app_id.metainfo.xml"
check "the desktop entry's \"Share this screen\" action runs porthole --share" \
  grep -Pzo '\[Desktop Action share\]\nName=Share this screen\nExec=porthole --share\n' \
  "$pkg/usr/share/applications/$app_id.desktop"
verify_unit() {
  # As a unit file systemd accepts (its ExecStart pointed at the packaged binary).
  local unit=$work/unit/porthole-share.service
  mkdir -p "$work/unit"
  sed "s|/usr/bin/porthole|$pkg/usr/bin/porthole|" "$pkg/usr/lib/systemd/user/porthole-share.service" >"$unit"
  grep -q '^ExecStart=[^ ]*porthole share' "$unit" && ! grep -Eq '^ExecStart=.*--(code|turn-password)' "$unit" || { echo "ExecStart is not a share without secrets"; return 1; }
  out=$(systemd-analyze verify --man=no "$unit" 2>&1) && [ -z "$out" ] || { echo "$out"; return 1; }
}
if command -v systemd-analyze >/dev/null; then
  check "the systemd user unit verifies, and its command line holds no code" verify_unit
else
  echo "# no systemd-analyze here: the unit is not verified"
fi
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $3*256+$4 "x" $7*256+$8}'; }
bad_icons=()
for s in 16 32 48 64 128 256 512; do
  got=$(png_size "$pkg/usr/share/icons/hicolor/${s}x${s}/apps/$app_id.png")
  [ "$got" = "${s}x${s}" ] || bad_icons+=("${s}x${s}: $got")
done
[ ${#bad_icons[@]} = 0 ] && ok "PNG icons are the sizes their directories say" || not_ok "icon sizes" "${bad_icons[@]}"

# --- man page and completions -------------------------------------------------------
man_check() {
  local page=$1 want=$2 text
  text=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>"$work/man.err") || return 1
  if [ -s "$work/man.err" ]; then cat "$work/man.err"; return 1; fi
  for w in $want; do
    grep -q -- "$w" <<<"$text" || { echo "no $w in:"; echo "$text" | head -n 60; return 1; }
  done
}
check "man porthole renders (man -l): commands, configuration file, environment" \
  man_check "$pkg/usr/share/man/man1/porthole.1.gz" "SYNOPSIS share view record CONFIGURATION ENVIRONMENT PORTHOLE_CONFIG porthole-share(1)"
check "man porthole-share renders with its options and defaults" \
  man_check "$pkg/usr/share/man/man1/porthole-share.1.gz" "--virtual --allow-control default:"
complete_words() {
  # What bash completes after `porthole $*`, with the packaged script.
  bash --norc --noprofile -c '
    source "$1"; shift
    COMP_WORDS=(porthole "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
    fn=$(complete -p porthole | sed -n "s/.*-F \([^ ]*\).*/\1/p")
    "$fn" porthole "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' bash "$pkg/usr/share/bash-completion/completions/porthole" "$@"
}
words=$(complete_words "")
[[ $'\n'$words$'\n' == *$'\nshare\n'* && $words == *view* && $words == *record* && $words == *list* ]] &&
  [[ $words != *generate* && $words != *test-pattern* ]] &&
  ok "bash: porthole <TAB> completes the commands (not the hidden ones)" ||
  not_ok "bash completion of commands" "$words"
words=$(complete_words share --allow-c)
[ "$(sort <<<"$words" | tr '\n' ' ')" = "--allow-clipboard --allow-control " ] &&
  ok "bash: porthole share --allow-c<TAB> completes its options" ||
  not_ok "bash completion of options" "$words"

# --- a clean Debian 12 root ---------------------------------------------------------
if ! tarball=$(tests/package/pristine-root.sh); then
  not_ok "a pristine Debian 12 root (debootstrap)"
  finish
fi
mkdir -p "$chroot_dir" "$cache/apt-archives/partial"
tar -C "$chroot_dir" -xzf "$tarball"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$chroot_dir/usr/sbin/policy-rc.d"
chmod 0755 "$chroot_dir/usr/sbin/policy-rc.d"
mount -t proc proc "$chroot_dir/proc"
mount --rbind /dev "$chroot_dir/dev"
mount -t tmpfs tmpfs "$chroot_dir/tmp"
# Downloaded packages are kept between runs (the mirror is only asked for what changed).
mount --bind "$cache/apt-archives" "$chroot_dir/var/cache/apt/archives"
cp "$deb_a" "$chroot_dir/root/"
in_root() { chroot "$chroot_dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
apt() {
  in_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o APT::Sandbox::User=root \
    -o Dpkg::Use-Pty=0 "$@"
}
deb_in_root=/root/$(basename "$deb_a")

check "apt-get update in the clean root (Debian's mirror)" apt update
start=$(date +%s)
check "apt installs the package without its Recommends, resolving its Depends" \
  apt install --no-install-recommends "$deb_in_root"
echo "    ($(($(date +%s) - start)) s)"
no_xvfb() { ! in_root sh -c 'command -v Xvfb'; }
check "no Xvfb in the root yet" no_xvfb
out=$(in_root porthole --version 2>&1)
[ "${out%% (*}" = "porthole $version" ] && ok "porthole --version: $out" ||
  not_ok "porthole --version" "$out"
out=$(unshare -n chroot "$chroot_dir" env -i PATH=/usr/bin:/bin HOME=/root timeout 20 porthole share --virtual 640x480 --listen 127.0.0.1:0 --audio none --no-announce 2>&1)
code=$?
[ $code != 0 ] && [[ $out == *"install the xvfb package"* ]] &&
  ok "without Xvfb, share --virtual says to install xvfb" ||
  not_ok "share --virtual without Xvfb (exit $code)" "$out"

start=$(date +%s)
reinstall_with_recommends() {
  in_root dpkg --purge porthole && apt install "$deb_in_root" && in_root dpkg -s xvfb pulseaudio >/dev/null
}
check "apt installs it again with its Recommends (xvfb, pulseaudio)" reinstall_with_recommends
echo "    ($(($(date +%s) - start)) s)"

# The share runs in a loopback-only network namespace, like the e2e tests.
cat >"$work/share.sh" <<'SHARE'
set -u
root=$1 out=$2
ip link set lo up
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root \
  porthole share --virtual 640x480 --listen 127.0.0.1:0 --audio none --no-announce \
  >"$out.stdout" 2>"$out.stderr" &
pid=$!
echo "$pid" >"$out.pid"
for _ in $(seq 300); do
  grep -q '^viewer: ' "$out.stdout" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
line=$(grep -m1 '^viewer: ' "$out.stdout") || { kill "$pid" 2>/dev/null; wait "$pid"; exit 1; }
port=$(sed -n 's|^viewer: http://127.0.0.1:\([0-9]*\)/#code=.*|\1|p' <<<"$line")
# The page answers on that port.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
head -n 1 <&3 >"$out.http"
exec 3<&-
kill -TERM "$pid"
wait "$pid"
echo "exit $?" >"$out.exit"
SHARE
start=$(date +%s)
unshare -n bash "$work/share.sh" "$chroot_dir" "$work/share"
viewer=$(grep -m1 '^viewer: ' "$work/share.stdout" 2>/dev/null)
[[ $viewer =~ ^viewer:\ http://127\.0\.0\.1:[0-9]+/#code= ]] &&
  ok "installed porthole shares a virtual 640x480 display: $viewer ($(($(date +%s) - start)) s)" ||
  not_ok "porthole share --virtual in the clean root" "$(cat "$work/share.stdout" "$work/share.stderr" 2>/dev/null | tail -n 30)"
check "its viewer page answers 200" grep -q ' 200 ' "$work/share.http"
check "it stops cleanly on SIGTERM" grep -qx 'exit 0' "$work/share.exit"

finish
