#!/usr/bin/env bash
# Builds the bench's real program twice: Debian's tmux 3.3a source package with its own
# bug fix upstream-0f6227f46b.diff ("complain if the buffer doesn't exist" in
# cmd-set-buffer.c) reverted (orig/) and applied (patched/), both with Debian's
# dpkg-buildflags plus -ffunction-sections -fdata-sections, from the same relative paths.
# Usage: prepare.sh DIR   (idempotent: does nothing when DIR/patched/tmux exists)
set -eu
dir=$1
[ -x "$dir/patched/tmux" ] && [ -x "$dir/orig/tmux" ] && exit 0
need=()
for p in libevent-dev libncurses-dev libutempter-dev bison pkg-config dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench/diff: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$dir"
cd "$dir"
[ -d src ] || { mkdir -p dl && (cd dl && apt-get source -qq tmux=3.3a-3 >/dev/null 2>&1 || apt-get source -qq tmux >/dev/null) && mv dl/tmux-3.3a src; }
cflags="$(dpkg-buildflags --get CFLAGS) -ffunction-sections -fdata-sections"
for t in orig patched; do
  rm -rf "$t"
  cp -a src "$t"
  if [ "$t" = orig ]; then (cd "$t" && patch -R -p1 -s < debian/patches/upstream-0f6227f46b.diff); fi
  (cd "$t" && ./configure -q CFLAGS="$cflags" CPPFLAGS="$(dpkg-buildflags --get CPPFLAGS)" LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" >/dev/null && make -s -j2 >/dev/null 2>&1)
done
