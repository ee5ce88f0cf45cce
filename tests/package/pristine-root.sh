#!/usr/bin/env bash
# Prints the path of a tarball holding a clean Debian 12 root (debootstrap --variant=minbase
# bookworm, with bookworm-updates and bookworm-security in its sources), making it first
# when it is missing. It is cached between runs (a fresh clone or machine rebuilds it: a
# few minutes, from Debian's mirror). Needs root and the debootstrap package.
#   PORTHOLE_TEST_CACHE  where to keep it (default /var/cache/porthole-test)
#   DEBIAN_MIRROR        default http://deb.debian.org/debian
set -euo pipefail
cache=${PORTHOLE_TEST_CACHE:-/var/cache/porthole-test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/bookworm-minbase.tar.gz
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/root.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
echo "pristine-root: debootstrap --variant=minbase bookworm into $work (once; cached as $tarball)" >&2
debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "pristine-root: debootstrap failed (log above)" >&2
  exit 1
}
security=${mirror%/debian}/debian-security
cat >"$work/root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# No lists or downloaded packages in the tarball: each run starts from the same state.
rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" --numeric-owner -czf "$work/root.tar.gz" .
mv "$work/root.tar.gz" "$tarball"
echo "$tarball"
