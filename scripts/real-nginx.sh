#!/usr/bin/env bash
# The real program of the tests (docs/real-program.md): nginx from Debian 12 and one of
# its own security fixes.
#
#   scripts/real-nginx.sh [CACHE]     (CACHE: $PATCHC_TEST_CACHE or /var/cache/patchc-test)
#
# Downloads the Debian source package once (apt-get source, verified against the signed
# archive index) into CACHE/nginx/ and prepares there, once:
#
#   CACHE/nginx/1.22.1-9+deb12u9/nginx-1.22.1/   the ORIGINAL tree: upstream + debian/patches
#                                                 in series order, up to and excluding the fix
#   CACHE/nginx/1.22.1-9+deb12u9/fix.patch        the fix: debian/patches/CVE-2026-42945.patch
#
# and prints the two paths, one per line. Needs a deb-src entry (scripts/test-deps.sh
# adds the twin of the deb one) and dpkg-dev, patch.
set -euo pipefail
VERSION=1.22.1-9+deb12u9 # deb12u11 is in the index, but the archive answers 404 for it
FIX=CVE-2026-42945.patch
cache=${1:-${PATCHC_TEST_CACHE:-/var/cache/patchc-test}}
dir=$cache/nginx
out=$dir/$VERSION
tree=$out/nginx-1.22.1
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [ ! -f "$out/complete" ]; then
  if [ ! -f "$dir/nginx_$VERSION.dsc" ]; then
    (cd "$dir" && apt-get source --download-only -qq "nginx=$VERSION" >&2) || {
      echo "real-nginx: apt-get source nginx=$VERSION failed (is there a deb-src entry? run scripts/test-deps.sh)" >&2
      exit 1
    }
  fi
  tmp=$out.tmp
  rm -rf "$tmp" "$out"
  mkdir -p "$tmp"
  # Unpacked without the patches: they are applied below, in series order, up to the fix.
  dpkg-source --skip-patches -x "$dir/nginx_$VERSION.dsc" "$tmp/nginx-1.22.1" >"$tmp.log" 2>&1 || {
    cat "$tmp.log" >&2
    exit 1
  }
  rm -f "$tmp.log"
  grep -qx "$FIX" "$tmp/nginx-1.22.1/debian/patches/series" || {
    echo "real-nginx: $FIX is not in debian/patches/series of nginx $VERSION" >&2
    exit 1
  }
  while read -r p; do
    case $p in '' | '#'*) continue ;; esac
    [ "$p" = "$FIX" ] && break
    patch -d "$tmp/nginx-1.22.1" -p1 --batch --forward -s -i "debian/patches/$p" >&2
  done <"$tmp/nginx-1.22.1/debian/patches/series"
  cp "$tmp/nginx-1.22.1/debian/patches/$FIX" "$tmp/fix.patch"
  # The tree is what the tests build: no quilt state.
  rm -rf "$tmp/nginx-1.22.1/.pc" "$tmp"/*.orig.tar.*
  date > "$tmp/complete"
  mv "$tmp" "$out"
fi
echo "$tree"
echo "$out/fix.patch"
