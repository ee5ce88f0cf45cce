#!/usr/bin/env bash
# Builds the Debian package: target/debian/porthole_<version>_<arch>.deb.
#
#   packaging/build-deb.sh [--profile release|dev] [--no-build] [--binary FILE] [--out DIR]
#
# --profile   the cargo profile to package (default release; dev is for tests: quicker
#             to build, same contents)
# --no-build  package the binary already built for that profile (in $CARGO_TARGET_DIR or
#             target/) instead of running cargo build first
# --binary F  package this porthole binary (implies --no-build)
# --out DIR   where to write the .deb (default target/debian)
#
# Plain dpkg-deb rather than cargo-deb: nothing to install beyond Debian's dpkg-dev, and
# every byte of the package is decided here — the man pages and completions come from the
# binary itself (`porthole generate`), the icons are rendered from the SVG, Depends is
# computed by dpkg-shlibdeps from the libraries the binary links.
#
# Reproducible: every mtime is SOURCE_DATE_EPOCH (default: the last commit's time), files
# are owned by root with fixed modes, dpkg-deb sorts the archive, gzip runs with -n; the
# same binary gives the same .deb, byte for byte.
#
# Needs: cargo (unless --no-build), dpkg-dev (dpkg-deb, dpkg-shlibdeps), binutils (strip),
# librsvg2-bin (rsvg-convert), git (for the commit and the date).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

profile=release
build=1
bin=
out=$repo/target/debian
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs release or dev}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --no-build) build=0; shift ;;
    --binary) bin=${2:?--binary needs a file}; build=0; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $profile in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "build-deb: --profile must be release or dev, not $profile" >&2; exit 2 ;;
esac

for tool in dpkg-deb dpkg-shlibdeps strip rsvg-convert; do
  command -v "$tool" >/dev/null || {
    echo "build-deb: $tool is missing (scripts/install-deps.sh test installs it)" >&2
    exit 1
  }
done

# The package's version is the workspace's.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
arch=$(dpkg --print-architecture)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || {
    echo "build-deb: not a git checkout: set SOURCE_DATE_EPOCH" >&2
    exit 1
  }
fi
export SOURCE_DATE_EPOCH
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
homepage=${PORTHOLE_HOMEPAGE:-https://github.com/porthole/porthole}
app_id=io.github.porthole.Porthole

target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=${bin:-$target_dir/$profile_dir/porthole}
if [ "$build" = 1 ]; then
  # The commit goes into `porthole --version` (a tree with changes is marked so).
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
  if [ -n "$commit" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit=$commit-modified
  fi
  echo "build-deb: cargo build --profile $profile ($commit)" >&2
  PORTHOLE_GIT_COMMIT=$commit cargo build --locked --profile "$profile" --bin porthole
fi
[ -x "$bin" ] || { echo "build-deb: no binary at $bin (build it, or drop --no-build)" >&2; exit 1; }

umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/porthole-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
install -d "$root/DEBIAN" "$root/usr/bin"

# The binary, without debug information (Debian policy; the dev profile's is huge).
strip --strip-unneeded -o "$root/usr/bin/porthole" "$bin"
chmod 0755 "$root/usr/bin/porthole"

# Man pages and completions from the binary, with the built-in defaults only.
gen() { env -u DISPLAY PORTHOLE_CONFIG=/dev/null "$root/usr/bin/porthole" generate "$@"; }
gen man "$work/man" --date "$date"
gen completions "$work/completions"
install -d "$root/usr/share/man/man1"
for page in "$work"/man/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$work/completions/porthole.bash" "$root/usr/share/bash-completion/completions/porthole"
install -D -m 0644 "$work/completions/_porthole" "$root/usr/share/zsh/vendor-completions/_porthole"
install -D -m 0644 "$work/completions/porthole.fish" "$root/usr/share/fish/vendor_completions.d/porthole.fish"

# Desktop entry, AppStream metadata, icons, the systemd user unit.
install -D -m 0644 "packaging/$app_id.desktop" "$root/usr/share/applications/$app_id.desktop"
install -d "$root/usr/share/metainfo"
sed "s|@HOMEPAGE@|$homepage|g" "packaging/$app_id.metainfo.xml" >"$root/usr/share/metainfo/$app_id.metainfo.xml"
install -D -m 0644 "packaging/$app_id.svg" "$root/usr/share/icons/hicolor/scalable/apps/$app_id.svg"
for size in 16 24 32 48 64 128 256 512; do
  dir=$root/usr/share/icons/hicolor/${size}x${size}/apps
  install -d "$dir"
  rsvg-convert -w "$size" -h "$size" "packaging/$app_id.svg" -o "$dir/$app_id.png"
done
install -D -m 0644 packaging/porthole-share.service "$root/usr/lib/systemd/user/porthole-share.service"
install -D -m 0644 packaging/copyright "$root/usr/share/doc/porthole/copyright"

# Depends: the packages of the libraries the binary links (dpkg-shlibdeps), and those
# the desktop app loads at run time (winit and wgpu dlopen them, so no tool can see them).
install -d "$work/src/debian"
printf 'Source: porthole\n\nPackage: porthole\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/bin/porthole" 2>"$work/shlibdeps.log") || {
  cat "$work/shlibdeps.log" >&2
  exit 1
}
depends=${shlibs#shlibs:Depends=}
[ -n "$depends" ] && [ "$depends" != "$shlibs" ] || {
  echo "build-deb: dpkg-shlibdeps gave no Depends: $shlibs" >&2
  exit 1
}
depends="$depends, libx11-6, libx11-xcb1, libxcursor1, libxi6, libxrandr2, libxkbcommon-x11-0, libegl1"
installed_size=$(du -sk --apparent-size "$root/usr" | cut -f1)

cat >"$root/DEBIAN/control" <<CONTROL
Package: porthole
Version: $version
Architecture: $arch
Maintainer: The Porthole developers <dev@porthole.invalid>
Installed-Size: $installed_size
Depends: $depends
Recommends: xvfb, pulseaudio | pipewire-pulse, libgl1-mesa-dri | mesa-vulkan-drivers,
 xdg-desktop-portal, pipewire
Suggests: chromium | firefox-esr
Section: net
Priority: optional
Homepage: $homepage
Description: share a screen and its sound over WebRTC
 Porthole shares an X11 or Wayland screen and what it plays with any modern
 browser (nothing to install) or with another Porthole, from one small native
 program: low latency, remote mouse and keyboard control and clipboard sync
 granted per viewer, LAN discovery over mDNS, and recording to MP4.
 .
 Xvfb is needed for headless shares of a private display (porthole share
 --virtual), PulseAudio for sharing sound, and on Wayland desktops the
 ScreenCast portal (xdg-desktop-portal with the desktop's backend) and PipeWire.
CONTROL
(cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

# Fixed modes and times for everything.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f ! -path "$root/usr/bin/*" -exec chmod 0644 {} +
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$out/porthole_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
